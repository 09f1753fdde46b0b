"""Sign-in and sign-up throttling, per client address and per email.

Every sign-in attempt is counted *before* its password is checked, in the same atomic statement
that reads the count (`crud.auth_throttle.charge`): a burst of concurrent guesses cannot all slip
past the check before the first failure is written. A right password then takes its attempt back:
the email's count is cleared (its owner is in) and the address's count loses this one attempt
(so signing in to one's own account cannot wash out guesses at others'). Sign-ups are counted per
address. Counts live in the database, so every gateway replica sees the same ones and a restart
does not reset them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from coderapi.crud import auth_throttle
from coderapi.store.database import Database
from coderapi.clock import utcnow

LOGIN_WINDOW = timedelta(minutes=15)
SIGNUP_WINDOW = timedelta(hours=1)
_EMAIL_LENGTH = 254
_IP_LENGTH = 64


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused, and for how long (seconds)."""

    reason: str  # "ip" or "email"
    retry_after: int


def _email(email: str) -> str:
    return (email or "").strip().lower()[:_EMAIL_LENGTH]


def _ip(ip: str) -> str:
    return (ip or "unknown")[:_IP_LENGTH]


class AuthThrottle:
    def __init__(
        self,
        db: Database,
        *,
        login_per_email: int = 10,
        login_per_ip: int = 30,
        signup_per_ip: int = 20,
        login_window: timedelta = LOGIN_WINDOW,
        signup_window: timedelta = SIGNUP_WINDOW,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self.login_per_email, self.login_per_ip, self.signup_per_ip = login_per_email, login_per_ip, signup_per_ip
        self.login_window, self.signup_window = login_window, signup_window
        self._now = clock

    async def charge_login(self, email: str, ip: str) -> Refusal | None:
        """Count a sign-in attempt; a Refusal when the address or the email is over its limit."""
        return await asyncio.to_thread(self._charge_login, _email(email), _ip(ip))

    async def login_succeeded(self, email: str, ip: str) -> None:
        await asyncio.to_thread(self._login_succeeded, _email(email), _ip(ip))

    async def charge_signup(self, ip: str) -> Refusal | None:
        """Count a sign-up attempt from `ip`; a Refusal when the address is over its limit."""
        return await asyncio.to_thread(self._charge_signup, _ip(ip))

    # blocking parts ------------------------------------------------------------------------

    def _charge(self, session, key: str, limit: int, window: timedelta, now: datetime) -> int | None:
        count, start = auth_throttle.charge(session, key, now, window)
        if count <= limit:
            return None
        return max(1, math.ceil((start + window - now).total_seconds()))

    def _charge_login(self, email: str, ip: str) -> Refusal | None:
        now = self._now()
        with self._db.session() as session:
            auth_throttle.purge(session, now - max(self.login_window, self.signup_window))
            wait = self._charge(session, f"login-ip:{ip}", self.login_per_ip, self.login_window, now)
            if wait is not None:  # refused on the address: the email's count is not touched
                return Refusal("ip", wait)
            wait = self._charge(session, f"login-email:{email}", self.login_per_email, self.login_window, now)
            return Refusal("email", wait) if wait is not None else None

    def _login_succeeded(self, email: str, ip: str) -> None:
        with self._db.session() as session:
            auth_throttle.clear(session, f"login-email:{email}")
            auth_throttle.refund(session, f"login-ip:{ip}")

    def _charge_signup(self, ip: str) -> Refusal | None:
        now = self._now()
        with self._db.session() as session:
            wait = self._charge(session, f"signup-ip:{ip}", self.signup_per_ip, self.signup_window, now)
        return Refusal("ip", wait) if wait is not None else None
