"""The store tier: crud and services on a real SQLite file (tests/unit does no I/O).

`db` is the one database fixture of the tier: a fresh file, migrated to head, disposed after;
`funded_key` a user with $1 and an inference key on it, with the cost-hold ledger, for the ledger tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import event

from coderapi.services.account_types import Principal
from coderapi.services.accounts import AccountService
from coderapi.services.reservations import CostReservations
from coderapi.services.spending import PeriodSpend
from coderapi.store.database import Database


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "nested" / "dir" / "store.db"  # a parent that does not exist yet: Database creates it


@pytest.fixture
def db(db_path) -> Iterator[Database]:
    database = Database(f"sqlite:///{db_path}")
    database.upgrade()
    yield database
    database.dispose()


@dataclass
class FundedKey:
    accounts: AccountService
    ledger: CostReservations
    principal: Principal


@pytest.fixture
def funded_key(db) -> FundedKey:
    accounts = AccountService(db, starting_credit=1)

    async def seed() -> Principal:
        user = await accounts.signups.create_user("dev@example.com", "correct horse")
        _, secret = await accounts.keys.create_key(user.id)
        return await accounts.keys.authenticate_key(secret)

    return FundedKey(accounts, CostReservations(db, PeriodSpend(db), ttl_seconds=600), asyncio.run(seed()))


@pytest.fixture
def ledger_case(db, tmp_path, funded_key):
    """(db, accounts, ledger, principal, commits, tmp_path): `commits` counts the database's commits."""
    commits = []
    event.listen(db.engine, "commit", lambda connection: commits.append(1))
    yield db, funded_key.accounts, funded_key.ledger, funded_key.principal, commits, tmp_path
