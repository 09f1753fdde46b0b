"""Login throttling: after `max_failures` wrong passwords for one email from one address within
`window`, further attempts are refused (before any password check) until the oldest of those
failures leaves the window. Kept in the database (table `login_failures`), so every gateway
replica sees the same count and a restart does not reset it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from coderapi.store.database import Database
from coderapi.store.tables import LoginFailure, utcnow

_EMAIL_LENGTH = 254
_IP_LENGTH = 64


def _key(email: str, ip: str) -> tuple[str, str]:
    return (email or "").strip().lower()[:_EMAIL_LENGTH], (ip or "unknown")[:_IP_LENGTH]


class LoginThrottle:
    def __init__(
        self,
        db: Database,
        *,
        max_failures: int = 5,
        window: timedelta = timedelta(minutes=15),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self.max_failures = max_failures
        self.window = window
        self._now = clock

    async def retry_after(self, email: str, ip: str) -> int | None:
        """Seconds until this email may be tried again from `ip`; None when it may be now."""
        return await asyncio.to_thread(self._retry_after, *_key(email, ip))

    async def record_failure(self, email: str, ip: str) -> None:
        await asyncio.to_thread(self._record_failure, *_key(email, ip))

    async def clear(self, email: str, ip: str) -> None:
        email, ip = _key(email, ip)
        await asyncio.to_thread(self._delete, LoginFailure.email == email, LoginFailure.ip == ip)

    def _retry_after(self, email: str, ip: str) -> int | None:
        now = self._now()
        query = select(func.count(), func.min(LoginFailure.created_at)).where(
            LoginFailure.email == email, LoginFailure.ip == ip, LoginFailure.created_at > now - self.window
        )
        with self._db.session() as session:
            count, oldest = session.execute(query).one()
        if count < self.max_failures or oldest is None:
            return None
        return max(1, math.ceil((oldest + self.window - now).total_seconds()))

    def _record_failure(self, email: str, ip: str) -> None:
        now = self._now()
        with self._db.session() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.created_at <= now - self.window))
            session.add(LoginFailure(email=email, ip=ip, created_at=now))

    def _delete(self, *conditions) -> None:
        with self._db.session() as session:
            session.execute(delete(LoginFailure).where(*conditions))
