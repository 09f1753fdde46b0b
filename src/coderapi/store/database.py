"""One database handle per app: a sync SQLAlchemy engine, sessions, and Alembic upgrades.

Callers on the event loop run their database work through `asyncio.to_thread`; the engine is
synchronous on purpose (SQLite and psycopg both block).

A database that cannot answer (SQLite locked past the timeout, PostgreSQL down or unreachable, the
connection pool exhausted) raises `ServiceUnavailable` (503, Retry-After) from `session()`: every
service reaches the store through it, so no caller sees a raw driver error and no answer is a 500.
The DB-API's OperationalError is exactly that class of failure ("not under the programmer's
control": lost connections, locks, unreachable servers), so the mapping goes by type, not message.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from coderapi.errors import ServiceUnavailable
from coderapi.store import auth_epoch

log = logging.getLogger("coderapi.store")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_TIMEOUT_SECONDS = 30.0  # tools (CLI, tests); the server passes `database_timeout_seconds`
SQLITE_POOL_SIZE = 40  # above the event loop's default worker threads (min(32, cores + 4))
UNAVAILABLE_RETRY_AFTER = 2.0  # seconds, in the 503's Retry-After
# Any constant works; it keeps two gateway replicas from migrating PostgreSQL at the same time.
_PG_MIGRATION_LOCK = 0x636F646572617069


def alembic_config() -> Config:
    """An Alembic config built in code (no alembic.ini): it points at the packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


@contextmanager
def _pg_session_lock(connection, key: int, poll_seconds: float = 0.2) -> Iterator[None]:
    """Hold PostgreSQL advisory lock `key` for the session, outside any transaction once taken.

    Polled with pg_try_advisory_lock rather than waited for: a statement blocked in
    pg_advisory_lock keeps its snapshot, and a CREATE INDEX CONCURRENTLY in the holder's
    migration waits for every older snapshot to go, so the two would wait on each other."""
    waited = False
    while not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
        connection.rollback()  # no snapshot held while waiting
        if not waited:
            log.info("waiting for another process's migrations to finish")
            waited = True
        time.sleep(poll_seconds)
    connection.commit()
    try:
        yield
    finally:
        try:
            connection.rollback()  # a failed migration's transaction, if any; the session lock stays
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()
        except OperationalError:  # the session is gone, and its lock with it
            log.warning("migration lock: the session ended before it was released", exc_info=True)


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_engine(url: URL, echo: bool, timeout: float) -> Engine:
    if _is_memory_sqlite(url):
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(
            url, echo=echo, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": timeout}
        # More pooled connections than worker threads: an overflow connection is closed when it is
        # returned, and opening one (with its PRAGMAs) costs more than the query it was opened for.
        engine = create_engine(url, echo=echo, connect_args=connect_args, pool_size=SQLITE_POOL_SIZE)
    busy_ms = int(timeout * 1000)

    def pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", pragmas)
    return engine


def _unavailable(cause: BaseException) -> ServiceUnavailable:
    log.warning("database unavailable: %s", (str(cause).splitlines() or [""])[0][:200])
    return ServiceUnavailable(
        "The database is busy or unavailable; please retry shortly.",
        retry_after=UNAVAILABLE_RETRY_AFTER,
        code="database_unavailable",
    )


def _server_engine(url: URL, echo: bool, timeout: float) -> Engine:
    connect_args = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(2, math.ceil(timeout))  # libpq: whole seconds, at least 2
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_timeout=timeout, connect_args=connect_args)


class Database:
    """Engine and session factory for one database URL (SQLite or `postgresql+psycopg://`)."""

    def __init__(self, url: str, *, echo: bool = False, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """`timeout_seconds`: how long a session waits for a lock, a connection or the pool."""
        self.url = make_url(url)
        if self.url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, echo, timeout_seconds)
        else:
            self.engine = _server_engine(self.url, echo, timeout_seconds)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        auth_epoch.watch(self._sessions)  # key and owner changes raise the auth epoch in their transaction
        self._epoch_reader = None
        if self.url.get_backend_name() == "sqlite" and not _is_memory_sqlite(self.url):
            self._epoch_reader = auth_epoch.SqliteEpochReader(Path(self.url.database).expanduser(), timeout_seconds)

    def auth_epoch_here(self) -> int | None:
        """The auth epoch, read on this thread where that is cheaper than a worker thread (a SQLite
        file); None elsewhere (read it in a session in a worker thread)."""
        if self._epoch_reader is None:
            return None
        try:
            return self._epoch_reader.read()
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error.
        Raises ServiceUnavailable when the database cannot answer (see the module docstring)."""
        try:
            with self._sessions.begin() as session:
                yield session
        except (OperationalError, PoolTimeout) as exc:
            raise _unavailable(getattr(exc, "orig", None) or exc) from exc

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to `revision` (the schema's only source of truth).
        One process at a time: an advisory lock on PostgreSQL, a file lock beside a SQLite file."""
        with self._sqlite_migration_lock():
            self._upgrade(revision)

    @contextmanager
    def _sqlite_migration_lock(self) -> Iterator[None]:
        # Two processes starting on one new SQLite file would both create the tables
        # ("table alembic_version already exists"); SQLite's DDL takes no lock Alembic can wait on.
        if self.dialect != "sqlite" or _is_memory_sqlite(self.url):
            yield
            return
        import fcntl

        lock_path = Path(self.url.database).expanduser().with_suffix(".migrate.lock")
        with open(lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _upgrade(self, revision: str) -> None:
        cfg = alembic_config()
        if self.dialect != "postgresql":
            with self.engine.begin() as connection:  # SQLite: every migration in one transaction
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
            return
        # PostgreSQL: a transaction per migration, so that one may build an index CONCURRENTLY
        # (outside any transaction: migration 0006), under a lock held by the session.
        with self.engine.connect() as connection, _pg_session_lock(connection, _PG_MIGRATION_LOCK):
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)

    def current_revision(self) -> str | None:
        """The migration the database is at (None before the first `upgrade()`)."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def dispose(self) -> None:
        self._epoch_reader = None  # its connections close as they are collected
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"
