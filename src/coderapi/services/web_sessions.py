"""Server-side dashboard sessions (table `web_sessions`).

The browser's cookie carries a random token; the table keeps only its sha256, the user and an
expiry. Signing in always makes a new token (the old one is deleted), signing out deletes it,
and a disabled user's sessions stop resolving at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from coderapi.crud import sessions as crud_sessions
from coderapi.services.account_types import UserInfo
from coderapi.store.database import Database
from coderapi.clock import utcnow

DEFAULT_LIFETIME = timedelta(days=7)
_TOKEN_BYTES = 32
_MAX_TOKEN_LENGTH = 128


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SessionStore:
    def __init__(
        self,
        db: Database,
        *,
        lifetime: timedelta = DEFAULT_LIFETIME,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self.lifetime = lifetime
        self._now = clock

    async def create(self, user_id: int, *, replacing: str | None = None) -> str:
        """A new session token for the user; `replacing` (the browser's previous token) is
        deleted first, so a session id planted before login is worthless after it."""
        return await asyncio.to_thread(self._create, user_id, replacing)

    async def resolve(self, token: str | None) -> UserInfo | None:
        """The signed-in user, or None for an unknown, expired or disabled one."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return None
        return await asyncio.to_thread(self._resolve, token)

    async def revoke(self, token: str | None) -> None:
        if token and len(token) <= _MAX_TOKEN_LENGTH:
            await asyncio.to_thread(self._delete, crud_sessions.delete_by_id, _digest(token))

    async def revoke_user(self, user_id: int) -> None:
        await asyncio.to_thread(self._delete, crud_sessions.delete_of_user, user_id)

    # blocking parts ------------------------------------------------------------------------

    def _create(self, user_id: int, replacing: str | None) -> str:
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        now = self._now()
        with self._db.session() as session:
            crud_sessions.delete_expired(session, now)
            if replacing and len(replacing) <= _MAX_TOKEN_LENGTH:
                crud_sessions.delete_by_id(session, _digest(replacing))
            crud_sessions.insert(
                session, digest=_digest(token), user_id=user_id, now=now, expires_at=now + self.lifetime
            )
        return token

    def _resolve(self, token: str) -> UserInfo | None:
        with self._db.session() as session:
            found = crud_sessions.with_user(session, _digest(token))
            if found is None:
                return None
            row, user = found
            if row.expires_at <= self._now() or user.disabled:
                crud_sessions.delete_by_id(session, row.id)
                return None
            return UserInfo.from_row(user)

    def _delete(self, query, value) -> None:
        with self._db.session() as session:
            query(session, value)
