"""The auth epoch: raised in the transaction of any change to what a key may do.

Every change to a key or to the parts of its owner a request is admitted on goes through the ORM
(key_ops, user_ops, signup_ops), so one `before_flush` hook sees them all and raises the counter
in the same transaction: no change can commit without it, whichever process made it (a gateway,
the dashboard, the CLI). What does not raise it: a key's name and `last_used_at` stamp, and the balance
moving by usage debits and credit grants (Core statements on the money path). Taking credit away
does raise it (`user_ops.grant_credit` with a negative amount), since leases are sized on it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sqlalchemy import event, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from coderapi.store.tables import ApiKey, AuthEpoch, User

# A user's columns a key's admission depends on (see services.key_ops.principal_from).
_USER_AUTH_COLUMNS = frozenset({"email", "role", "disabled", "rpm_limit", "tpm_limit", "pending_approval"})
_KEY_BOOKKEEPING = frozenset({"name", "last_used_at", "updated_at"})  # no part of its admission

_TABLE = AuthEpoch.__table__


def current(session: Session) -> int:
    return session.scalar(select(_TABLE.c.value).where(_TABLE.c.id == 1)) or 0


def bump(session: Session) -> None:
    session.execute(update(_TABLE).where(_TABLE.c.id == 1).values(value=_TABLE.c.value + 1))


def _changed(row: object, watched: frozenset[str] | None, ignored: frozenset[str]) -> bool:
    state = inspect(row)
    for attribute in state.mapper.column_attrs:
        name = attribute.key
        if name in ignored or (watched is not None and name not in watched):
            continue
        if state.attrs[name].history.has_changes():
            return True
    return False


def _affects_auth(session: Session) -> bool:
    for row in session.deleted:
        if isinstance(row, (ApiKey, User)):
            return True
    for row in session.dirty:
        if isinstance(row, ApiKey) and _changed(row, None, _KEY_BOOKKEEPING):
            return True
        if isinstance(row, User) and _changed(row, _USER_AUTH_COLUMNS, frozenset()):
            return True
    return False


def _before_flush(session: Session, flush_context, instances) -> None:
    if _affects_auth(session):
        bump(session)


def watch(sessions: sessionmaker) -> None:
    """Raise the epoch in every session of `sessions` that changes a key or its owner's access."""
    event.listen(sessions, "before_flush", _before_flush)


class SqliteEpochReader:
    """The epoch read on the caller's thread, from a SQLite file, on a connection of its own.

    Every inference request reads the epoch; a hop to a worker thread and back costs more than
    the read. A WAL-mode read never waits for a writer (it sees the last commit), so the event
    loop may do it itself: tens of microseconds. Server databases go through the pool in a worker
    thread (`current`). Raises sqlite3.Error, which the caller maps (see `Database`)."""

    _QUERY = "SELECT value FROM auth_epoch WHERE id = 1"

    def __init__(self, path: Path, timeout_seconds: float) -> None:
        self._path = path
        self._timeout = timeout_seconds
        self._local = threading.local()  # a connection per thread (tests run several loops)

    def read(self) -> int:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
            connection.execute("PRAGMA query_only=ON")
            self._local.connection = connection
        rows = connection.execute(self._QUERY).fetchall()  # stepped to the end: no read left open
        return rows[0][0] if rows else 0
