"""Counters of sign-in failures and sign-up attempts (table `auth_throttle`), one row per bucket
("login-ip:…", "login-email:…", "signup-ip:…") with a fixed window.

`charge` is the throttle's one atomic step: a single INSERT … ON CONFLICT DO UPDATE … RETURNING
counts the attempt and reads the new count together, so concurrent attempts (threads, gateway
replicas on one PostgreSQL) can never all pass a check before any of them is recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from coderapi.store.tables import AuthThrottle, UTCDateTime

KEY_LENGTH = 320

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def charge(session: Session, key: str, now: datetime, window: timedelta) -> tuple[int, datetime]:
    """Count one attempt in `key`'s current window (a new window once the old one has passed);
    returns the count including this attempt and when the window began."""
    insert = _INSERTS[session.get_bind().dialect.name]
    now_value = bindparam("now_value", now, type_=UTCDateTime())
    expired = AuthThrottle.window_start <= bindparam("cutoff", now - window, type_=UTCDateTime())
    statement = (
        insert(AuthThrottle)
        .values(key=key[:KEY_LENGTH], window_start=now, count=1)
        .on_conflict_do_update(
            index_elements=[AuthThrottle.key],
            set_={
                "count": case((expired, 1), else_=AuthThrottle.count + 1),
                "window_start": case((expired, now_value), else_=AuthThrottle.window_start),
            },
        )
        .returning(AuthThrottle.count, AuthThrottle.window_start)
    )
    count, window_start = session.execute(statement).one()
    return count, window_start


def refund(session: Session, key: str) -> None:
    """Take back one attempt (a sign-in that turned out to be right)."""
    session.execute(
        update(AuthThrottle)
        .where(AuthThrottle.key == key[:KEY_LENGTH], AuthThrottle.count > 0)
        .values(count=AuthThrottle.count - 1)
    )


def clear(session: Session, key: str) -> None:
    session.execute(delete(AuthThrottle).where(AuthThrottle.key == key[:KEY_LENGTH]))


def purge(session: Session, before: datetime) -> None:
    """Forget windows that began before `before` (they no longer hold anyone back)."""
    session.execute(delete(AuthThrottle).where(AuthThrottle.window_start < before))
