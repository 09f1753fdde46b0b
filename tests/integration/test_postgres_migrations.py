"""Migrations on a real PostgreSQL while gateways write: migration 0006 builds its indexes
CONCURRENTLY, so usage rows keep being written during the build, and a build left half done is
redone. Set CODERAPI_TEST_POSTGRES_URL (see test_postgres_store.py)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from coderapi.store.database import Database
from coderapi.store.tables import UsageEvent, User
from tests.integration.postgres import fresh_schema

pytestmark = pytest.mark.postgres



def _usage(request_id: str, user_id: int) -> UsageEvent:
    return UsageEvent(request_id=request_id, user_id=user_id, model="m", endpoint="chat.completions", status="success")


@pytest.fixture
def at_0005():
    """A database at the revision before 0006, with one user; its URL."""
    with fresh_schema() as schema:
        database = Database(schema.dsn)
        database.upgrade("0005")
        with Session(database.engine) as session, session.begin():
            session.add(User(email="a@example.com", password_hash="x"))
        database.dispose()
        yield schema.dsn


def _user_id(session: Session) -> int:
    return session.execute(text("SELECT id FROM users")).scalar_one()


def _indexes(connection) -> dict[str, bool]:
    rows = connection.execute(text(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = 'usage_events' "
        "AND t.relnamespace = current_schema()::regnamespace"))
    return dict(rows.all())


def test_usage_rows_are_written_while_0006_builds_its_indexes(at_0005):
    engine = create_engine(at_0005)
    database = Database(at_0005)
    # A gateway's usage write still open: a plain CREATE INDEX queues behind it for a lock on the
    # table, and every later write queues behind that; CONCURRENTLY takes no such lock.
    holder = Session(engine)
    upgrade = threading.Thread(target=database.upgrade, daemon=True)
    try:
        holder.add(_usage("open", _user_id(holder)))
        holder.flush()
        upgrade.start()
        time.sleep(1.0)  # the build has begun and waits for the open write
        with Session(engine) as writer, writer.begin():
            writer.execute(text("SET LOCAL lock_timeout = '3s'"))
            writer.add(_usage("during", _user_id(writer)))  # written at once, not held up
            writer.flush()
        assert upgrade.is_alive()  # the build is still waiting for the open transaction
        holder.commit()
    finally:
        holder.close()  # a failed check still lets the build finish
        upgrade.join(60)
    try:
        assert not upgrade.is_alive()
        with engine.connect() as connection:
            indexes = _indexes(connection)
            assert connection.execute(text("SELECT count(*) FROM usage_events")).scalar_one() == 2
        assert indexes.get("ix_usage_events_user_reports") is True and indexes.get("ix_usage_events_key_spend") is True
        assert "ix_usage_events_user_id_created_at" not in indexes and "ix_usage_events_key_id_created_at" not in indexes
        assert database.current_revision() != "0005"
    finally:
        database.dispose()
        engine.dispose()


def test_an_index_left_by_a_failed_build_is_built_again(at_0005):
    engine = create_engine(at_0005)
    with engine.begin() as connection:  # what an interrupted build leaves: the name, not the columns
        connection.execute(text("CREATE INDEX ix_usage_events_user_reports ON usage_events (user_id)"))
    database = Database(at_0005)
    try:
        database.upgrade()
        with engine.connect() as connection:
            built = connection.execute(text(
                "SELECT i.indnatts FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = 'ix_usage_events_user_reports' "
                "AND c.relnamespace = current_schema()::regnamespace")).scalars().all()
        assert built == [9]  # one index of that name, on the report's nine columns
    finally:
        database.dispose()
        engine.dispose()
