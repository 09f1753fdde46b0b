"""Alembic environment for coderapi.

`Database.upgrade()` passes its open connection in `config.attributes["connection"]` (on SQLite
inside one transaction for every migration; on PostgreSQL outside any, holding the migration lock);
without one (the `alembic` command line, given a `sqlalchemy.url`), an engine is made from the URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from coderapi.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs copy the table
        compare_type=True,
        # Given a connection outside a transaction (PostgreSQL), each migration commits on its own,
        # so one can step out of transactions (CREATE INDEX CONCURRENTLY, migration 0006).
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _configure(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
