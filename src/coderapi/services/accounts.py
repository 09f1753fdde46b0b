"""Accounts: users, passwords, API keys, balances and usage records.

`AccountService` is the async face the API, dashboard and CLI use. Every method hands its
database work to a worker thread (`asyncio.to_thread`) and its argon2 work to the password pool
(`PasswordPool`: a few threads of its own, with a bounded queue), so none of it runs on the event
loop and password checks never hold up the threads that look up API keys. It returns plain
dataclasses (`UserInfo`, `KeyInfo`, `Principal`), never ORM rows,
and raises the typed errors of `coderapi.errors`. Money is USD as `Decimal` (six places).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from coderapi.errors import InvalidRequest
from coderapi.services import key_ops, keygen, signup_ops, user_limits, user_ops
from coderapi.services.account_types import (
    DEFAULT_SCOPES,
    KNOWN_SCOPES,
    MANAGEMENT_SCOPES,
    MODEL_SCOPES,
    KeyInfo,
    Principal,
    UsageRecord,
    ROLES,
    UserInfo,
)
from coderapi.services.key_cache import KeyCache
from coderapi.services.passwords import PasswordPool, needs_rehash
from coderapi.services.signup_ops import InviteInfo
from coderapi.store.database import Database
from coderapi.store.tables import to_money, utcnow

__all__ = [
    "DEFAULT_SCOPES",
    "KNOWN_SCOPES",
    "MANAGEMENT_SCOPES",
    "MODEL_SCOPES",
    "AccountService",
    "KeyInfo",
    "Principal",
    "UsageRecord",
    "UserInfo",
]


class AccountService:
    def __init__(
        self, db: Database, *, starting_credit: float, clock: Callable[[], datetime] = utcnow,
        max_keys_per_user: int | None = None, passwords: PasswordPool | None = None,
        key_cache_size: int = 0,
    ) -> None:
        self._db = db
        self.passwords = passwords or PasswordPool()
        self._max_keys = max_keys_per_user  # None: no cap (tests, tools); the app sets the setting
        self._starting_credit = to_money(starting_credit)
        self._now = clock
        self.key_cache = KeyCache(key_cache_size)  # inference keys; see key_cache for why it is safe

    # users ---------------------------------------------------------------------------------

    async def create_user(
        self, email: str, password: str, role: str = "user", *,
        pending_approval: bool = False, invite_code: str | None = None,
    ) -> UserInfo:
        """A new user holding the starting credit. Bad email/password/role or invite code:
        InvalidRequest (with `param`); an email already taken: Conflict; the password pool's
        queue full: Overloaded. A `pending_approval` user is disabled until `approve_user`."""
        email = user_ops.normalize_email(email)
        user_ops.check_password(password)
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", param="role")
        password_hash = await self.passwords.hash(password)
        return await asyncio.to_thread(
            signup_ops.insert_new_user, self._db, email, password_hash, role, self._starting_credit,
            self._now(), pending=pending_approval, invite_code=invite_code,
        )

    async def verify_password(self, email: str, password: str) -> UserInfo | None:
        """The user if the password matches and the account is enabled; None otherwise. An
        unknown email still costs one argon2 check (against a dummy hash), so the answer time
        does not tell which emails have accounts. The password pool's queue full: Overloaded."""
        try:
            email = user_ops.normalize_email(email)
        except InvalidRequest:
            email = None
        stored, user = await asyncio.to_thread(signup_ops.password_record, self._db, email)
        if not await self.passwords.verify(stored, password or "") or user is None or user.disabled:
            return None
        if needs_rehash(stored):
            new_hash = await self.passwords.hash(password)
            await asyncio.to_thread(signup_ops.set_password_hash, self._db, user.id, new_hash)
        return user

    async def approve_user(self, user_id: int) -> UserInfo:
        """Enable a sign-up that waited for approval."""
        return await asyncio.to_thread(signup_ops.approve_user, self._db, user_id)

    async def create_invite(self, created_by: int | None) -> tuple[InviteInfo, str]:
        """A single-use sign-up code, returned here once (only its sha256 is kept)."""
        return await asyncio.to_thread(signup_ops.create_invite, self._db, created_by, self._now())

    async def list_invites(self) -> list[InviteInfo]:
        return await asyncio.to_thread(signup_ops.list_invites, self._db)

    async def revoke_invite(self, invite_id: int) -> None:
        await asyncio.to_thread(signup_ops.revoke_invite, self._db, invite_id)

    async def get_user(self, user_id: int) -> UserInfo:
        return await asyncio.to_thread(user_ops.get_user, self._db, user_id)

    async def get_user_by_email(self, email: str) -> UserInfo:
        return await asyncio.to_thread(user_ops.get_user_by_email, self._db, email)

    async def list_users(self) -> list[UserInfo]:
        return await asyncio.to_thread(user_ops.list_users, self._db)

    async def set_user_disabled(self, user_id: int, disabled: bool) -> UserInfo:
        return await asyncio.to_thread(user_ops.set_user_disabled, self._db, user_id, disabled)

    async def set_user_limits(self, user_id: int, *, rpm_limit: int | None, tpm_limit: int | None) -> UserInfo:
        """Per-user requests/tokens per minute for each of the user's keys; None: the default."""
        return await asyncio.to_thread(user_limits.set_user_limits, self._db, user_id, rpm_limit, tpm_limit)

    async def bootstrap_admin(self, email: str = "admin@localhost") -> str | None:
        """Only on an empty users table: an admin with a random password and one inference key,
        whose secret is returned (show it once). None when any user exists already."""
        return await asyncio.to_thread(
            key_ops.bootstrap_admin, self._db, email, self._starting_credit, self._now()
        )

    # keys ----------------------------------------------------------------------------------

    async def create_key(
        self,
        user_id: int,
        *,
        name: str | None = None,
        kind: str = "inference",
        scopes: list[str] | None = None,
        limit_threshold: Decimal | float | None = None,
        limit_retention: str = "no_reset",
    ) -> tuple[KeyInfo, str]:
        """A new key and its secret. The secret is returned here once and kept nowhere."""
        fields = dict(
            name=name, kind=kind, scopes=scopes,
            limit_threshold=limit_threshold, limit_retention=limit_retention, max_keys=self._max_keys,
        )
        return await asyncio.to_thread(key_ops.create_key, self._db, user_id, self._now(), **fields)

    async def authenticate_key(self, secret: str) -> Principal:
        """Unknown or malformed: AuthenticationFailed; disabled key or user: PermissionDenied
        (code key_disabled / user_disabled). Stamps last_used_at at most once a minute."""
        return await asyncio.to_thread(key_ops.authenticate, self._db, secret, self._now())

    async def authenticate_inference_key(self, secret: str) -> Principal:
        """As `authenticate_key`, answered from the key cache when the key was seen before: only for
        callers that check the principal against its row later (inference, see `key_cache`)."""
        if not isinstance(secret, str) or not keygen.is_well_formed(secret):
            return await self.authenticate_key(secret)  # refused there, as any malformed key
        digest = keygen.hash_secret(secret)
        principal = self.key_cache.get(digest)
        if principal is None:
            principal = await self.authenticate_key(secret)
            self.key_cache.put(digest, principal)
        return principal

    async def list_keys(self, user_id: int) -> list[KeyInfo]:
        """The user's keys, oldest first, each with its spend this UTC month."""
        return await asyncio.to_thread(key_ops.list_keys, self._db, user_id, self._now())

    async def get_key(self, user_id: int, prefix: str) -> KeyInfo:
        return await asyncio.to_thread(key_ops.get_key, self._db, user_id, prefix, self._now())

    async def update_key(self, user_id: int, prefix: str, /, **fields) -> KeyInfo:
        """Fields: name, disabled, scopes (None: the kind's defaults), limit_threshold (None:
        no limit), limit_retention. Anything else: InvalidRequest."""
        return await asyncio.to_thread(key_ops.update_key, self._db, user_id, prefix, fields, self._now())

    async def delete_key(self, user_id: int, prefix: str) -> None:
        await asyncio.to_thread(key_ops.delete_key, self._db, user_id, prefix)

    async def set_key_disabled(self, user_id: int, prefix: str, disabled: bool) -> KeyInfo:
        return await self.update_key(user_id, prefix, disabled=disabled)

    async def resolve_key(self, prefix_or_secret: str) -> KeyInfo:
        """Operator lookup across all users, by prefix or whole secret (for the CLI and admins)."""
        return await asyncio.to_thread(key_ops.resolve_key, self._db, prefix_or_secret, self._now())

    # money ---------------------------------------------------------------------------------

    async def record_usage(self, record: UsageRecord) -> int:
        """Insert the usage event and debit its cost, in one transaction; returns the event id."""
        return await asyncio.to_thread(user_ops.record_usage, self._db, record, self._now())

    async def balance(self, user_id: int) -> Decimal:
        return await asyncio.to_thread(user_ops.balance, self._db, user_id)

    async def grant_credit(
        self, user_id: int, amount: Decimal | float, reason: str, granted_by: str
    ) -> Decimal:
        """Credit (or, negative, debit) the balance with a ledger row; returns the new balance."""
        return await asyncio.to_thread(
            user_ops.grant_credit, self._db, user_id, amount, reason, granted_by
        )

    async def spend_in_period(self, key_id: int, retention: str) -> Decimal:
        """USD spent with the key since the period began (UTC day, ISO week from Monday, month;
        all time for no_reset)."""
        return await asyncio.to_thread(
            user_ops.spend_in_period, self._db, key_id, retention, self._now()
        )
