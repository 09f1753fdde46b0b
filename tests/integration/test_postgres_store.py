"""The store and accounts service on a real PostgreSQL (psycopg 3).

Set CODERAPI_TEST_POSTGRES_URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/coderapi_test
(.ci/run does). Without it the tests skip, or fail when CODERAPI_REQUIRE_INTEGRATION is set.
Each test works in a schema of its own, dropped afterwards, so the database is left as found.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from decimal import Decimal

import pytest
from sqlalchemy import inspect, text

from coderapi.services.accounts import AccountService, UsageRecord
from coderapi.services.spending import PeriodSpend
from coderapi.store.database import Database
from tests.integration.postgres import fresh_schema


pytestmark = pytest.mark.postgres


@pytest.fixture
def schema_url():
    with fresh_schema() as schema:
        yield schema.dsn, schema.name


def _head() -> str:
    from alembic.script import ScriptDirectory

    from coderapi.store.database import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
def db(schema_url):
    database = Database(schema_url[0])
    database.upgrade()
    yield database
    database.dispose()


def test_migrations_create_the_tables(db, schema_url):
    tables = set(inspect(db.engine).get_table_names(schema=schema_url[1]))
    assert {"users", "api_keys", "usage_events", "credit_grants", "alembic_version"} <= tables
    assert db.current_revision() == _head()
    db.upgrade()  # a second run changes nothing


def test_migrations_agree_with_the_orm_model(db):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from coderapi.store.tables import Base

    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_replicas_can_migrate_at_the_same_time(schema_url):
    databases = [Database(schema_url[0]) for _ in range(3)]
    with ThreadPoolExecutor(len(databases)) as pool:
        list(pool.map(lambda d: d.upgrade(), databases))
    assert {d.current_revision() for d in databases} == {_head()}
    for d in databases:
        d.dispose()


async def test_user_key_usage_round_trip(db):
    svc = AccountService(db, starting_credit=5.0)
    user = await svc.signups.create_user("Dev@Example.com", "long enough")
    info, secret = await svc.keys.create_key(user.id, name="pg", limit_threshold=10, limit_retention="week")
    principal = await svc.keys.authenticate_key(secret)
    assert (principal.user_id, principal.key_prefix) == (user.id, info.prefix)
    assert principal.limit_threshold == Decimal(10)

    records = [
        UsageRecord(
            request_id=f"req-{i}", user_id=user.id, key_id=info.id, key_prefix=info.prefix,
            model="Qwen/Qwen2.5-Coder-32B-Instruct", endpoint="chat.completions",
            prompt_tokens=100, completion_tokens=50, cost=Decimal("0.000123"),
        )
        for i in range(20)
    ]
    await asyncio.gather(*(svc.users.record_usage(r) for r in records))  # concurrent debits add up

    assert await svc.users.balance(user.id) == Decimal("5") - 20 * Decimal("0.000123")
    spend = PeriodSpend(db)
    assert await spend.spent(info.id, info.prefix, "week") == Decimal("0.002460")
    [listed] = await svc.keys.list_keys(user.id)
    assert listed.monthly_usage == Decimal("0.002460")
    assert listed.last_used_at is not None and listed.last_used_at.tzinfo == timezone.utc

    await svc.keys.delete_key(user.id, info.prefix)
    assert await PeriodSpend(db).spent(info.id, info.prefix, "no_reset") == Decimal(0)  # rows kept, key_id nulled
    with db.session() as session:
        kept = session.execute(text("SELECT count(*) FROM usage_events WHERE key_prefix = :p"),
                               {"p": info.prefix}).scalar()
    assert kept == 20


async def test_bootstrap_and_duplicate_email(db):
    svc = AccountService(db, starting_credit=0)
    assert await svc.signups.bootstrap_admin() is not None
    assert await svc.signups.bootstrap_admin() is None
    from coderapi.errors import Conflict

    with pytest.raises(Conflict):
        await svc.signups.create_user("ADMIN@localhost", "long enough")
