"""What each key has spent in its current limit period, cheap enough to check on every request.

Summing a key's usage rows since the period began costs more the busier the key; so the sum is
kept in two parts. Rows older than a settling lag (45 s: longer than a usage row waits between
its timestamp and its commit, SQLite's 30 s busy timeout included) are *settled*: their sum up
to a boundary is cached per key and advanced incrementally. Rows after the boundary are summed
on every check, with the (key_id, created_at) index: at most a minute of rows, which the key's
requests-per-minute limit bounds. The answer is therefore exact (a row committed later than the
lag would be missed by the cache, never by billing), and every replica keeps its own cache of
the same database rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from coderapi.clock import utcnow
from coderapi.crud.usage import period_start, spend_between
from coderapi.money import to_money
from coderapi.store.database import Database

SETTLING_LAG = timedelta(seconds=45)
ADVANCE_EVERY = timedelta(seconds=15)
_MAX_CACHED = 100_000


@dataclass(frozen=True)
class _Settled:
    period_start: datetime | None  # None: all time (no_reset)
    boundary: datetime  # rows before it (and in the period) are summed in `total`
    total: Decimal


class PeriodSpend:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._now = clock
        self._settled: dict[tuple[int, str, str], _Settled] = {}

    async def spent(self, key_id: int, prefix: str, retention: str) -> Decimal:
        """USD the key has spent since its period (UTC day, ISO week, month; all time) began.
        The prefix tells a new key from a deleted one whose id the database reused."""
        return await asyncio.to_thread(self._spent_in_new_session, key_id, prefix, retention)

    def _spent_in_new_session(self, key_id: int, prefix: str, retention: str) -> Decimal:
        with self._db.session() as session:
            return self.spent_in(session, key_id, prefix, retention)

    def spent_in(self, session: Session, key_id: int, prefix: str, retention: str) -> Decimal:
        """As `spent`, inside the caller's transaction (blocking: call it from a worker thread).
        Cost reservations call it with the user's row locked, so no settlement lands meanwhile."""
        slot = (key_id, prefix, retention)
        total, settled = self._read(session, key_id, retention, self._settled.get(slot))
        if len(self._settled) >= _MAX_CACHED and slot not in self._settled:
            self._settled.clear()
        self._settled[slot] = settled  # a consistent snapshot, whichever concurrent check wrote last
        return total

    def _read(self, session: Session, key_id: int, retention: str, settled: _Settled | None) -> tuple[Decimal, _Settled]:
        now = self._now()
        start = period_start(retention, now)
        target = now - SETTLING_LAG
        if settled is None or settled.period_start != start:
            boundary = target if start is None else max(start, target)
            settled = _Settled(start, boundary, spend_between(session, key_id, start, boundary))
        elif target - settled.boundary >= ADVANCE_EVERY:
            more = spend_between(session, key_id, settled.boundary, target)
            settled = _Settled(start, target, settled.total + more)
        recent = spend_between(session, key_id, settled.boundary, None)
        return to_money(settled.total + recent), settled
