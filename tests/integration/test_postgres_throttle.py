"""Sign-in throttling on a real PostgreSQL, as several gateways share it: attempts fired together
from two gateways (two engines, many threads) get exactly the allowed number of tries, and an
invite code is used once however many sign-ups race for it.

Set CODERAPI_TEST_POSTGRES_URL (.ci/run does); each test works in a schema of its own.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from coderapi.errors import InvalidRequest
from coderapi.services.accounts import AccountService
from coderapi.store.database import Database
from coderapi.services.auth_throttle import AuthThrottle
from tests.integration.postgres import fresh_schema


pytestmark = pytest.mark.postgres


@pytest.fixture
def gateways():
    """Two Database handles (two gateways) on one fresh schema."""
    with fresh_schema() as schema:
        url = schema.dsn
        dbs = [Database(url), Database(url)]
        dbs[0].upgrade()
        try:
            yield dbs
        finally:
            for db in dbs:
                db.dispose()


def test_concurrent_sign_in_attempts_from_two_gateways_get_exactly_the_limit(gateways):
    throttles = [AuthThrottle(db, login_per_email=5, login_per_ip=10_000) for db in gateways]

    def attempt(i: int):
        return asyncio.run(throttles[i % 2].charge_login("victim@example.com", f"10.0.{i}.1"))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(60)))
    assert sum(r is None for r in results) == 5
    assert {r.reason for r in results if r is not None} == {"email"}


def test_an_invite_is_used_once_however_many_sign_ups_race_for_it(gateways):
    accounts = [AccountService(db, starting_credit=0) for db in gateways]
    admin = asyncio.run(accounts[0].signups.create_user("root@example.com", "correct horse battery", role="admin"))
    _, code = asyncio.run(accounts[0].signups.create_invite(admin.id))

    def sign_up(i: int) -> bool:
        try:
            asyncio.run(accounts[i % 2].signups.create_user(f"u{i}@example.com", "correct horse battery", invite_code=code))
        except InvalidRequest:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(sign_up, range(8)))
    assert results.count(True) == 1
    assert len(asyncio.run(accounts[0].users.list_users())) == 2
