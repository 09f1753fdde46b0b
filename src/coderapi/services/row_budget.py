"""How many usage rows of empty requests one user may add: at most `per_minute`, on each gateway.

Every request leaves a usage row where it ends. Most rows are bounded by the key's limits: a request
that ran took a request of its RPM. But a request turned away before it did anything (refused by the
in-flight caps, the rate limits or the money check; a client that hung up while sending its body)
costs nothing, holds nothing, and comes as fast as one client can send: one Python client on the 2-core
VM drove 160 refusals a second through one key, about 250 bytes of database each, 3.5 GB a day. So
the rows of such *empty* requests (no token, no cost hold, refused or cancelled) are written for the
first `per_minute` of each user (all its keys: more keys do not buy more rows) in any minute, a token
bucket per user; the rest are answered as before, counted in the request metrics and in
`coderapi:usage_rows_unwritten`, and leave no row.
"""

from __future__ import annotations

import time
from typing import Callable

_MAX_OWNERS = 10_000  # buckets kept before the full ones are dropped (a full bucket is a fresh one)
_PRUNE_EVERY_SECONDS = 1.0  # at most so often: with more owners busy at once, a scan would find none


class EmptyRowBudget:
    """Touched only on the event loop."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute  # 0: every row is written
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # owner (user id) -> (rows left, when)
        self._pruned_at = float("-inf")

    def admits(self, owner: int) -> bool:
        """Whether the owner's next empty row is written (taking one from its bucket if so)."""
        if not self._per_minute:
            return True
        now = self._clock()
        left = self._level(owner, now)
        if left < 1:
            self._buckets[owner] = (left, now)
            return False
        self._buckets[owner] = (left - 1, now)
        if len(self._buckets) > _MAX_OWNERS and now - self._pruned_at >= _PRUNE_EVERY_SECONDS:
            self._pruned_at = now
            self._drop_full(now)
        return True

    def _level(self, owner: int, now: float) -> float:
        left, then = self._buckets.get(owner, (self._per_minute, now))
        return min(self._per_minute, left + (now - then) * self._per_minute / 60)

    def _drop_full(self, now: float) -> None:
        for owner in [o for o in self._buckets if self._level(o, now) >= self._per_minute]:
            del self._buckets[owner]
