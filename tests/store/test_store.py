"""The store: migrations, SQLite settings, column types, and the crud helpers' period maths."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from coderapi import crud
from coderapi.store.database import Database, alembic_config
from coderapi.store.tables import ApiKey, Base, UsageEvent, User, to_money

UTC = timezone.utc


def _user(session, email="a@example.com") -> User:
    return crud.users.insert(session, email=email, password_hash="x", role="user", balance=Decimal(1))


def _key(session, user_id: int, prefix="abcdefgh") -> ApiKey:
    return crud.keys.insert(session, user_id=user_id, prefix=prefix, secret_sha256=prefix * 8, scopes=[])


def test_upgrade_creates_the_tables_and_indexes(db):
    inspector = inspect(db.engine)
    assert {"users", "api_keys", "usage_events", "credit_grants", "alembic_version"} <= set(
        inspector.get_table_names()
    )
    key_indexes = {i["name"]: i for i in inspector.get_indexes("api_keys")}
    assert key_indexes["ix_api_keys_secret_sha256"]["unique"]
    usage_indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("usage_events")}
    assert usage_indexes["ix_usage_events_key_spend"] == ["key_id", "created_at", "cost"]
    assert usage_indexes["ix_usage_events_user_reports"] == [
        "user_id", "created_at", "id", "status", "model", "key_prefix", "prompt_tokens", "completion_tokens", "cost"
    ]
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("users")}
    assert ("email",) in uniques


def test_upgrade_is_idempotent_and_reaches_head(db):
    db.upgrade()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert db.current_revision() == head == "0006"


def test_migrations_agree_with_the_orm_model(db):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_removes_everything(db):
    cfg = alembic_config()
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")
    assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}


def test_sqlite_file_parent_is_created_with_wal_fk_and_busy_timeout(db_path, db):
    assert db_path.exists() and db_path.parent.name == "dir"
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_in_memory_sqlite_keeps_one_database():
    database = Database("sqlite://")
    database.upgrade()
    with database.session() as session:
        _user(session)
    with database.session() as session:
        assert crud.users.count(session) == 1
    database.dispose()


def test_session_rolls_back_on_error(db):
    with pytest.raises(RuntimeError):
        with db.session() as session:
            _user(session)
            raise RuntimeError("boom")
    with db.session() as session:
        assert crud.users.count(session) == 0


def test_timestamps_come_back_timezone_aware_utc(db):
    moment = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    with db.session() as session:
        user = _user(session)
        user.created_at = moment
    with db.session() as session:
        stored = session.scalar(select(User.created_at))
    assert stored == moment and stored.tzinfo == UTC and stored.hour == 3


def test_naive_datetimes_are_refused(db):
    with pytest.raises(Exception, match="naive"):
        with db.session() as session:
            user = _user(session)
            user.created_at = datetime(2025, 1, 1)


def test_deleting_a_key_keeps_its_usage_rows(db):
    with db.session() as session:
        user = _user(session)
        key = _key(session, user.id)
        crud.usage.insert(
            session, request_id="r1", user_id=user.id, key_id=key.id, key_prefix=key.prefix,
            model="m", endpoint="chat", status="success", cost=Decimal("0.5"),
        )
    with db.session() as session:
        crud.keys.delete(session, crud.keys.by_prefix(session, "abcdefgh"))
    with db.session() as session:
        event = session.scalar(select(UsageEvent))
    assert event.key_id is None and event.key_prefix == "abcdefgh"


def test_check_constraints_hold(db):
    with pytest.raises(Exception):
        with db.session() as session:
            crud.users.insert(session, email="b@example.com", password_hash="x", role="root", balance=Decimal(0))


def test_long_usage_strings_are_cut_to_fit(db):
    with db.session() as session:
        user = _user(session)
        event = crud.usage.insert(
            session, request_id="r", user_id=user.id, model="m" * 1000, endpoint="chat", status="error"
        )
        assert len(event.model) == 255


def test_balance_updates_are_relative(db):
    with db.session() as session:
        user_id = _user(session).id
    with db.session() as session:
        crud.users.adjust_balance(session, user_id, Decimal("-0.25"))
        crud.users.adjust_balance(session, user_id, Decimal("0.000001"))
    with db.session() as session:
        assert crud.users.balance(session, user_id) == Decimal("0.750001")


@pytest.mark.parametrize(
    ("retention", "expected"),
    [
        ("no_reset", None),
        ("day", datetime(2025, 7, 10, tzinfo=UTC)),
        ("week", datetime(2025, 7, 7, tzinfo=UTC)),  # 2025-07-10 is a Thursday
        ("month", datetime(2025, 7, 1, tzinfo=UTC)),
    ],
)
def test_period_start(retention, expected):
    assert crud.usage.period_start(retention, datetime(2025, 7, 10, 15, 30, tzinfo=UTC)) == expected


def test_period_start_rejects_unknown_retention():
    with pytest.raises(ValueError):
        crud.usage.period_start("year", datetime.now(UTC))


def test_spend_sums_per_key_and_period(db):
    now = datetime(2025, 7, 10, 12, tzinfo=UTC)
    with db.session() as session:
        user = _user(session)
        first, second = _key(session, user.id, "aaaaaaaa"), _key(session, user.id, "bbbbbbbb")
        for key, cost, when in [(first, "1.5", now), (first, "2", now - timedelta(days=40)), (second, "0.25", now)]:
            crud.usage.insert(
                session, request_id="r", user_id=user.id, key_id=key.id, model="m", endpoint="chat",
                status="success", cost=Decimal(cost), created_at=when,
            )
    month = crud.usage.period_start("month", now)
    with db.session() as session:
        assert crud.usage.spend_since(session, first.id, None) == Decimal("3.5")
        assert crud.usage.spend_since(session, first.id, month) == Decimal("1.5")
        assert crud.usage.spend_by_key_since(session, [first.id, second.id], month) == {
            first.id: Decimal("1.5"),
            second.id: Decimal("0.25"),
        }
        assert crud.usage.spend_by_key_since(session, [], month) == {}


def test_to_money_rounds_to_six_places():
    assert to_money(0.1 + 0.2) == Decimal("0.300000")
    assert to_money(None) == Decimal(0)
    assert to_money("1.23456789") == Decimal("1.234568")


def _plan(db, statement) -> str:
    compiled = statement.compile(db.engine, compile_kwargs={"render_postcompile": True})
    nulls = (None,) * len(compiled.positiontup)  # the plan does not depend on the values
    with db.engine.connect() as connection:
        return " | ".join(row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), nulls))


def test_reports_and_key_spend_read_the_index_alone(db):
    """Migration 0006: a report and a key's spend never read a table row per usage row (an account's
    millions of rows), so every column they read is in their index."""
    from sqlalchemy import func

    from coderapi.crud import usage_queries as q

    start, end = datetime(2026, 1, 1), datetime(2026, 3, 1)
    window = q.UsageFilter(1, start, end, key_prefix="abcd1234", models=("m",), statuses=("success",))
    totals = select(*q._aggregates(UsageEvent)).where(*q.where(window))
    by_model = select(UsageEvent.model, UsageEvent.key_prefix, UsageEvent.status, UsageEvent.cost).where(*q.where(window))
    charges = select(UsageEvent.id).where(UsageEvent.user_id == 1, UsageEvent.cost > 0).order_by(UsageEvent.created_at.desc())
    key_spend = select(func.sum(UsageEvent.cost)).where(UsageEvent.key_id == 1, UsageEvent.created_at >= start)
    for statement in (totals, by_model, charges):
        assert "USING COVERING INDEX ix_usage_events_user_reports" in _plan(db, statement)
    assert "USING COVERING INDEX ix_usage_events_key_spend" in _plan(db, key_spend)
    page = select(UsageEvent).where(*q.where(window)).order_by(UsageEvent.created_at.desc(), UsageEvent.id.desc())
    plan = _plan(db, page.limit(100).offset(900_000))  # a log page: read in the index's order, not sorted
    assert "INDEX ix_usage_events_user_reports" in plan and "TEMP B-TREE" not in plan


def test_day_buckets_match_a_bisection_of_the_local_midnights(db):
    """The day grouping's nested CASE (usage_queries._bucket) puts every row in the local day a
    bisection of the window's midnights gives, at and around each midnight, across DST changes."""
    import asyncio
    import bisect
    import random
    from zoneinfo import ZoneInfo

    from coderapi.services.usage_reports import UsageReports
    from coderapi.services.usage_window import Window

    window = Window(datetime(2026, 2, 20, 7, 30, tzinfo=UTC), datetime(2026, 5, 20, 7, 30, tzinfo=UTC))
    labels, edges = window.days(ZoneInfo("Europe/Berlin"))
    second = timedelta(seconds=1)
    rng = random.Random(7)
    stamps = [e + d for e in edges for d in (-second, timedelta(0), second)]
    stamps += [window.start + (window.end - window.start) * rng.random() for _ in range(300)]
    stamps = [s for s in stamps if window.start <= s <= window.end]
    with db.session() as session:
        user = _user(session)
        session.add_all(
            UsageEvent(request_id=f"r{i}", user_id=user.id, model="m", endpoint="chat", prompt_tokens=1,
                       completion_tokens=0, cached_tokens=0, cost=to_money(0), status="success", created_at=s)
            for i, s in enumerate(stamps)
        )
        session.flush()
        user_id = user.id
    expected: dict = {}
    for s in stamps:
        day = labels[bisect.bisect_right(edges, s)]
        expected[day] = expected.get(day, 0) + 1
    days = asyncio.run(UsageReports(db).series(user_id, window, by=("day",), tz="Europe/Berlin"))
    assert {g.day: g.totals.requests for g in days if g.totals.requests} == expected
    assert [g.day for g in days] == labels
