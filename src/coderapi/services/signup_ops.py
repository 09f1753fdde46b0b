"""Creating users, checking passwords, approvals and invites: the focused service
`SignupService`, and the blocking steps it runs in a worker thread. Argon2 work runs in the
password pool (`PasswordPool`: a few threads of its own, with a bounded queue), so it never runs on
the event loop nor holds up the threads that look up API keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError

from coderapi import crud
from coderapi.clock import utcnow
from coderapi.crud import invites as crud_invites
from coderapi.errors import Conflict, InvalidRequest, NotFound
from coderapi.services import key_ops, user_ops
from coderapi.services.account_types import ROLES, UserInfo
from coderapi.services.passwords import PasswordPool, needs_rehash
from coderapi.services.user_ops import insert_user
from coderapi.store.database import Database

INVITE_PREFIX = "inv-"
_INVITE_BYTES = 18
_MAX_INVITE_LENGTH = 128


@dataclass(frozen=True)
class InviteInfo:
    id: int
    created_at: datetime
    used_at: datetime | None
    used_by: int | None  # the user who signed up with it


def invite_digest(code: str) -> str:
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


def insert_new_user(
    db: Database,
    email: str,
    password_hash: str,
    role: str,
    credit: Decimal,
    now: datetime,
    *,
    pending: bool = False,
    invite_code: str | None = None,
) -> UserInfo:
    """Insert the user (an email already taken: Conflict). With `invite_code`, the invite is
    used up in the same transaction: an unknown or used code (InvalidRequest, param
    invite_code) leaves no user behind."""
    duplicate = Conflict(f"A user with email {email} already exists", param="email")
    bad_invite = InvalidRequest("This invite code is not valid, or it was used already.", param="invite_code")
    if invite_code is not None and not 0 < len(invite_code.strip()) <= _MAX_INVITE_LENGTH:
        raise bad_invite
    try:
        with db.session() as session:
            if crud.users.get_by_email(session, email) is not None:
                raise duplicate
            user = insert_user(session, email, password_hash, role, credit, pending=pending)
            if invite_code is not None and not crud_invites.consume(
                session, code_sha256=invite_digest(invite_code), user_id=user.id, now=now
            ):
                raise bad_invite  # rolls the user back
            return UserInfo.from_row(user)
    except IntegrityError:
        raise duplicate from None


def password_record(db: Database, email: str | None) -> tuple[str | None, UserInfo | None]:
    """The stored hash and the user, or (None, None) for an unknown email."""
    if not email:
        return None, None
    with db.session() as session:
        user = crud.users.get_by_email(session, email)
        return (user.password_hash, UserInfo.from_row(user)) if user is not None else (None, None)


def set_password_hash(db: Database, user_id: int, password_hash: str) -> None:
    with db.session() as session:
        user = crud.users.get(session, user_id)
        if user is not None:
            crud.rows.update(session, user, password_hash=password_hash)


def approve_user(db: Database, user_id: int) -> UserInfo:
    with db.session() as session:
        user = crud.users.get(session, user_id)
        if user is None:
            raise NotFound(f"No user with id {user_id}")
        return UserInfo.from_row(crud.rows.update(session, user, pending_approval=False, disabled=False))


def create_invite(db: Database, created_by: int | None, now: datetime) -> tuple[InviteInfo, str]:
    """A new single-use code, returned once; only its sha256 is kept."""
    code = INVITE_PREFIX + secrets.token_urlsafe(_INVITE_BYTES)
    with db.session() as session:
        row = crud_invites.insert(session, code_sha256=invite_digest(code), created_by=created_by, now=now)
        return InviteInfo(row.id, row.created_at, row.used_at, row.used_by), code


def list_invites(db: Database) -> list[InviteInfo]:
    with db.session() as session:
        return [InviteInfo(r.id, r.created_at, r.used_at, r.used_by) for r in crud_invites.list_all(session)]


def revoke_invite(db: Database, invite_id: int) -> None:
    with db.session() as session:
        if not crud_invites.delete_unused(session, invite_id):
            raise NotFound(f"No unused invite with id {invite_id}")


class SignupService:
    """Sign-ups, sign-ins, approvals, invites and the first admin; `passwords` is the argon2 pool."""

    def __init__(
        self, db: Database, *, starting_credit: Decimal, passwords: PasswordPool,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._starting_credit = starting_credit
        self.passwords = passwords
        self._now = clock

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
            insert_new_user, self._db, email, password_hash, role, self._starting_credit,
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
        stored, user = await asyncio.to_thread(password_record, self._db, email)
        if not await self.passwords.verify(stored, password or "") or user is None or user.disabled:
            return None
        if needs_rehash(stored):
            new_hash = await self.passwords.hash(password)
            await asyncio.to_thread(set_password_hash, self._db, user.id, new_hash)
        return user

    async def approve_user(self, user_id: int) -> UserInfo:
        """Enable a sign-up that waited for approval."""
        return await asyncio.to_thread(approve_user, self._db, user_id)

    async def create_invite(self, created_by: int | None) -> tuple[InviteInfo, str]:
        """A single-use sign-up code, returned here once (only its sha256 is kept)."""
        return await asyncio.to_thread(create_invite, self._db, created_by, self._now())

    async def list_invites(self) -> list[InviteInfo]:
        return await asyncio.to_thread(list_invites, self._db)

    async def revoke_invite(self, invite_id: int) -> None:
        await asyncio.to_thread(revoke_invite, self._db, invite_id)

    async def bootstrap_admin(self, email: str = "admin@localhost") -> str | None:
        """Only on an empty users table: an admin with a random password and one inference key,
        whose secret is returned (show it once). None when any user exists already."""
        return await asyncio.to_thread(
            key_ops.bootstrap_admin, self._db, email, self._starting_credit, self._now()
        )
