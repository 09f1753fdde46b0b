"""API keys: the focused service `KeyService`, and the blocking steps it runs in a worker thread.

Tenant isolation: every lookup by prefix that takes a `user_id` finds only that user's keys, and
another user's prefix is answered exactly like one that does not exist (NotFound).
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from coderapi import crud
from coderapi.backends.fair_pool import FairPool, run_on
from coderapi.clock import utcnow
from coderapi.errors import AuthenticationFailed, InternalError, InvalidRequest, NotFound, PermissionDenied
from coderapi.services import keygen, passwords, user_ops
from coderapi.services.account_types import (
    DEFAULT_SCOPES,
    KEY_KINDS,
    KNOWN_SCOPES,
    MANAGEMENT_SCOPES,
    MODEL_SCOPES,
    RETENTIONS,
    KeyInfo,
    Principal,
)
from coderapi.services.key_cache import KeyCache
from coderapi.services.user_ops import exact_money
from coderapi.store.database import Database

UPDATABLE_FIELDS = frozenset({"name", "disabled", "scopes", "limit_threshold", "limit_retention"})
LAST_USED_GRANULARITY = timedelta(minutes=1)
_MAX_NAME_LENGTH = 128
_CREATE_ATTEMPTS = 5


# Unicode categories a key name may not hold: controls (NUL, ESC: terminal escape sequences in
# `coderapi keys list`), format characters (zero-width, bidi overrides), surrogates and line breaks.
# Ordinary spaces are fine.
_NOT_IN_NAME = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_name(name: str | None) -> str | None:
    if name is not None and len(name) > _MAX_NAME_LENGTH:
        raise InvalidRequest(f"The key name is longer than {_MAX_NAME_LENGTH} characters", param="name")
    if name is not None and any(unicodedata.category(char) in _NOT_IN_NAME for char in name):
        raise InvalidRequest(
            "The key name must be plain text: no control characters, line breaks or invisible characters "
            "(such as zero-width or text-direction marks); spaces are fine.", param="name",
        )
    return name


def check_scopes(scopes, kind: str) -> list[str]:
    """The scopes to store; None means the kind's defaults."""
    if scopes is None:
        return list(DEFAULT_SCOPES[kind])
    if isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes):
        raise InvalidRequest("scopes must be a list of strings", param="scopes")
    unknown = sorted(set(scopes) - KNOWN_SCOPES)
    if unknown:
        raise InvalidRequest(f"Unknown scope(s): {', '.join(unknown)}", param="scopes")
    foreign = sorted(set(scopes) - set(MODEL_SCOPES if kind == "inference" else MANAGEMENT_SCOPES))
    if foreign:
        raise InvalidRequest(f"Scope(s) {', '.join(foreign)} do not apply to {kind} keys", param="scopes")
    return list(dict.fromkeys(scopes))  # order kept, duplicates dropped


def check_limit(threshold, retention: str) -> Decimal | None:
    """The limit to store, exactly as given: a value the money column would round is refused."""
    if retention not in RETENTIONS:
        raise InvalidRequest(f"retention must be one of {', '.join(RETENTIONS)}", param="limit.retention")
    if threshold is None:
        return None
    amount = exact_money(threshold, "limit.threshold")
    if amount < 0:
        raise InvalidRequest("The spending limit must not be negative", param="limit.threshold")
    return amount


def check_no_widening(current: list[str] | tuple[str, ...], wanted: list[str]) -> None:
    """A key's scopes may only shrink: a management key that could widen them could turn any
    narrowed key (or, with `scopes: null`, the kind's defaults) into a stronger one."""
    added = sorted(set(wanted) - set(current))
    if added:
        raise PermissionDenied(
            f"A key's scopes cannot be widened (this would add {', '.join(added)}); "
            "create a new key with the scopes it needs.",
            param="scopes", code="scopes_widened",
        )


def check_key_count(session: Session, user_id: int, max_keys: int | None) -> None:
    """Refuses a key beyond the per-user cap; called with the user's row locked, so two
    concurrent creations cannot both take the last slot."""
    if max_keys is None:
        return
    if crud.keys.count_for_user(session, user_id) >= max_keys:
        raise PermissionDenied(
            f"This account already has {max_keys} API keys, the most one user may hold; "
            "delete a key you no longer use to create another.",
            param="keys", code="too_many_keys",
        )


def insert_key(
    session: Session,
    user_id: int,
    secret: str,
    *,
    now: datetime,
    name: str | None = None,
    kind: str = "inference",
    scopes: list[str] | None = None,
    limit_threshold=None,
    limit_retention: str = "no_reset",
):
    """Validate and insert a key for `secret` (stored as its prefix and sha256 only)."""
    if kind not in KEY_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KEY_KINDS)}", param="kind")
    return crud.keys.insert(
        session,
        user_id=user_id,
        name=check_name(name),
        prefix=keygen.prefix_of(secret),
        secret_sha256=keygen.hash_secret(secret),
        kind=kind,
        scopes=check_scopes(scopes, kind),
        limit_threshold=check_limit(limit_threshold, limit_retention),
        limit_retention=limit_retention,
        created_at=now,
        updated_at=now,
    )


def create_key(db: Database, user_id: int, now: datetime, max_keys: int | None = None, **fields) -> tuple[KeyInfo, str]:
    """A new key and its secret; a prefix (or hash) collision draws a new secret. `max_keys`:
    the per-user cap (None: none)."""
    for _ in range(_CREATE_ATTEMPTS):
        secret = keygen.generate_secret()
        try:
            with db.session() as session:
                if crud.reservations.lock_user(session, user_id) is None:
                    raise NotFound(f"No user with id {user_id}")
                check_key_count(session, user_id, max_keys)
                info = KeyInfo.from_row(insert_key(session, user_id, secret, now=now, **fields))
            return info, secret
        except IntegrityError:
            continue
    raise InternalError("Could not allocate a unique API key prefix")


def authenticate(db: Database, secret: str, now: datetime) -> Principal:
    invalid = AuthenticationFailed("Invalid API key")
    if not isinstance(secret, str) or not keygen.is_well_formed(secret):
        raise invalid
    digest = keygen.hash_secret(secret)
    with db.session() as session:
        found = crud.keys.with_owner_by_sha256(session, digest)
        if found is None or not keygen.hashes_match(found[0].secret_sha256, digest):
            raise invalid
        key, user = found
        if key.disabled:
            raise PermissionDenied("This API key is disabled", code="key_disabled")
        if user.disabled:
            raise PermissionDenied("This account is disabled", code="user_disabled")
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_GRANULARITY:
            crud.keys.touch(session, key.id, now)
        return principal_from(key, user)


def read_auth_epoch(db: Database) -> int:
    with db.session() as session:
        return crud.auth_epoch.current(session)


def principal_from(key, user) -> Principal:
    """The caller a key stands for, from its row and its owner's (enabled or not: callers check)."""
    return Principal(
        user_id=user.id,
        email=user.email,
        role=user.role,
        key_id=key.id,
        key_prefix=key.prefix,
        key_kind=key.kind,
        scopes=tuple(key.scopes or ()),
        rpm_limit=user.rpm_limit,
        tpm_limit=user.tpm_limit,
        limit_threshold=key.limit_threshold,
        limit_retention=key.limit_retention,
        balance=user.balance,
    )


def _month_start(now: datetime) -> datetime:
    return crud.usage.period_start("month", now)


def _info(session: Session, key, now: datetime) -> KeyInfo:
    return KeyInfo.from_row(key, crud.usage.spend_since(session, key.id, _month_start(now)))


def _owned_or_404(session: Session, user_id: int, prefix: str):
    """The user's key row with `prefix`; NotFound for another user's prefix as for none."""
    key = crud.keys.by_prefix(session, prefix, user_id) if isinstance(prefix, str) else None
    if key is None:
        raise NotFound(f"No API key with prefix {prefix!r}", param="prefix")
    return key


def list_keys(db: Database, user_id: int, now: datetime) -> list[KeyInfo]:
    with db.session() as session:
        keys = crud.keys.list_for_user(session, user_id)
        spent = crud.usage.spend_by_key_since(session, (k.id for k in keys), _month_start(now))
        return [KeyInfo.from_row(k, spent.get(k.id, Decimal(0))) for k in keys]


def get_key(db: Database, user_id: int, prefix: str, now: datetime) -> KeyInfo:
    with db.session() as session:
        return _info(session, _owned_or_404(session, user_id, prefix), now)


def update_key(db: Database, user_id: int, prefix: str, fields: dict, now: datetime) -> KeyInfo:
    """Change any of UPDATABLE_FIELDS; `limit_threshold=None` removes the spending limit."""
    unknown = sorted(set(fields) - UPDATABLE_FIELDS)
    if unknown:
        raise InvalidRequest(f"Cannot update key field(s): {', '.join(unknown)}", param=unknown[0])
    with db.session() as session:
        key = _owned_or_404(session, user_id, prefix)
        retention = fields.get("limit_retention", key.limit_retention)
        threshold = fields.get("limit_threshold", key.limit_threshold)
        changes = dict(limit_threshold=check_limit(threshold, retention), limit_retention=retention, updated_at=now)
        if "name" in fields:
            changes["name"] = check_name(fields["name"])
        if "scopes" in fields:
            changes["scopes"] = check_scopes(fields["scopes"], key.kind)
            check_no_widening(key.scopes or [], changes["scopes"])
        if "disabled" in fields:
            changes["disabled"] = bool(fields["disabled"])
        return _info(session, crud.rows.update(session, key, **changes), now)


def delete_key(db: Database, user_id: int, prefix: str) -> None:
    with db.session() as session:
        crud.keys.delete(session, _owned_or_404(session, user_id, prefix))


def resolve_key(db: Database, prefix_or_secret: str, now: datetime) -> KeyInfo:
    """Operator lookup (no tenant check) by the 8-character prefix or the whole secret."""
    value = (prefix_or_secret or "").strip()
    with db.session() as session:
        if keygen.is_well_formed(value):
            key = crud.keys.by_sha256(session, keygen.hash_secret(value))
        elif keygen.is_prefix(value):
            key = crud.keys.by_prefix(session, value)
        else:
            raise InvalidRequest("Expected an 8-character key prefix or a whole key", param="key")
        if key is None:
            raise NotFound("No such API key", param="key")
        return _info(session, key, now)


def bootstrap_admin(db: Database, email: str, credit: Decimal, now: datetime) -> str | None:
    """On an empty users table, an admin with a random password plus one inference key, whose
    secret is returned. Processes racing here both see the table empty; the unique email lets
    one win."""
    email = user_ops.normalize_email(email)
    with db.session() as session:
        if crud.users.count(session):
            return None
    password_hash = passwords.hash_password(secrets.token_urlsafe(32))
    secret = keygen.generate_secret()
    try:
        with db.session() as session:
            if crud.users.count(session):
                return None
            user = user_ops.insert_user(session, email, password_hash, "admin", credit)
            insert_key(session, user.id, secret, name="bootstrap", now=now)
    except IntegrityError:
        return None
    return secret


class KeyService:
    """API keys for the API, dashboard and CLI; the database work runs in a worker thread. Returns
    `KeyInfo`/`Principal`, never ORM rows, and the secret only once, at creation."""

    def __init__(
        self, db: Database, *, clock: Callable[[], datetime] = utcnow, max_keys_per_user: int | None = None,
        key_cache_size: int = 0, report_pool: FairPool | None = None,
    ) -> None:
        self._db = db
        self._now = clock
        self._max_keys = max_keys_per_user  # None: no cap (tests, tools); the app sets the setting
        self.key_cache = KeyCache(key_cache_size)  # inference keys; see key_cache for why it is safe
        # A key's answer sums its usage rows this month (a month of a busy key: ~0.2 s per million
        # rows), so listing and reading keys run on the report threads (usage_reports.py), when given.
        self._report_pool = report_pool

    async def create_key(
        self, user_id: int, *, name: str | None = None, kind: str = "inference", scopes: list[str] | None = None,
        limit_threshold: Decimal | float | None = None, limit_retention: str = "no_reset",
    ) -> tuple[KeyInfo, str]:
        """A new key and its secret. The secret is returned here once and kept nowhere."""
        fields = dict(
            name=name, kind=kind, scopes=scopes,
            limit_threshold=limit_threshold, limit_retention=limit_retention, max_keys=self._max_keys,
        )
        return await asyncio.to_thread(create_key, self._db, user_id, self._now(), **fields)

    async def authenticate_key(self, secret: str) -> Principal:
        """Unknown or malformed: AuthenticationFailed; disabled key or user: PermissionDenied
        (code key_disabled / user_disabled). Stamps last_used_at at most once a minute."""
        return await asyncio.to_thread(authenticate, self._db, secret, self._now())

    async def authenticate_inference_key(self, secret: str) -> Principal:
        """As `authenticate_key`, answered from the key cache when the key was seen before: only for
        callers that check the principal against its row later (inference, see `key_cache`)."""
        if not isinstance(secret, str) or not keygen.is_well_formed(secret):
            return await self.authenticate_key(secret)  # refused there, as any malformed key
        epoch = self._db.auth_epoch_here()  # first: see key_cache
        if epoch is None:
            epoch = await asyncio.to_thread(read_auth_epoch, self._db)
        self.key_cache.sync(epoch)
        digest = keygen.hash_secret(secret)
        principal = self.key_cache.get(digest, epoch)
        if principal is None:
            principal = await self.authenticate_key(secret)
            self.key_cache.put(digest, principal, epoch)
        return principal

    async def list_keys(self, user_id: int) -> list[KeyInfo]:
        """The user's keys, oldest first, each with its spend this UTC month."""
        return await run_on(self._report_pool, user_id, list_keys, self._db, user_id, self._now())

    async def get_key(self, user_id: int, prefix: str) -> KeyInfo:
        return await run_on(self._report_pool, user_id, get_key, self._db, user_id, prefix, self._now())

    async def update_key(self, user_id: int, prefix: str, /, **fields) -> KeyInfo:
        """Fields: name, disabled, scopes (None: the kind's defaults), limit_threshold (None:
        no limit), limit_retention. Anything else: InvalidRequest."""
        return await asyncio.to_thread(update_key, self._db, user_id, prefix, fields, self._now())

    async def set_key_disabled(self, user_id: int, prefix: str, disabled: bool) -> KeyInfo:
        return await self.update_key(user_id, prefix, disabled=disabled)

    async def delete_key(self, user_id: int, prefix: str) -> None:
        await asyncio.to_thread(delete_key, self._db, user_id, prefix)

    async def resolve_key(self, prefix_or_secret: str) -> KeyInfo:
        """Operator lookup across all users, by prefix or whole secret (for the CLI and admins)."""
        return await asyncio.to_thread(resolve_key, self._db, prefix_or_secret, self._now())
