"""Accounts: users, passwords, API keys and balances, as three focused services that share one
database, clock and password pool.

Callers (API routes, dashboard, CLI) use the focused service they need: `keys` (`KeyService`:
create, authenticate, list, update, delete keys), `users` (`UserService`: users, rate-limit
overrides, balances and credit) and `signups` (`SignupService`: sign-up, sign-in, approvals,
invites, the first admin). Each runs its database work in a worker thread and its argon2 work in
the password pool, returns plain dataclasses (`UserInfo`, `KeyInfo`, `Principal`), never ORM rows,
and raises the typed errors of `coderapi.errors`. Money is USD as `Decimal` (six places).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from coderapi.backends.fair_pool import FairPool
from coderapi.clock import utcnow
from coderapi.money import to_money
from coderapi.services.account_types import (
    DEFAULT_SCOPES,
    KNOWN_SCOPES,
    MANAGEMENT_SCOPES,
    MODEL_SCOPES,
    KeyInfo,
    Principal,
    UsageRecord,
    UserInfo,
)
from coderapi.services.key_ops import KeyService
from coderapi.services.passwords import PasswordPool
from coderapi.services.signup_ops import SignupService
from coderapi.services.user_ops import UserService
from coderapi.store.database import Database

__all__ = [
    "DEFAULT_SCOPES",
    "KNOWN_SCOPES",
    "MANAGEMENT_SCOPES",
    "MODEL_SCOPES",
    "AccountService",
    "KeyInfo",
    "KeyService",
    "Principal",
    "SignupService",
    "UsageRecord",
    "UserInfo",
    "UserService",
]


class AccountService:
    """Builds the three account services on one database; it forwards nothing (call them)."""

    def __init__(
        self, db: Database, *, starting_credit: float, clock: Callable[[], datetime] = utcnow,
        max_keys_per_user: int | None = None, passwords: PasswordPool | None = None,
        key_cache_size: int = 0, report_pool: FairPool | None = None,
    ) -> None:
        self.passwords = passwords or PasswordPool()
        self.keys = KeyService(
            db, clock=clock, max_keys_per_user=max_keys_per_user, key_cache_size=key_cache_size, report_pool=report_pool
        )
        self.users = UserService(db, clock=clock)
        self.signups = SignupService(
            db, starting_credit=to_money(starting_credit), passwords=self.passwords, clock=clock
        )
