"""The in-process limiter: buckets in a dict owned by one app (one gateway process)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from coderapi.limits.bucket import Outcome, Take, refill, settle

_PRUNE_ABOVE = 10_000  # buckets kept before idle ones are dropped
_IDLE_SECONDS = 60.0  # per-minute buckets: one untouched this long, and not in debt, is full again


class MemoryLimiter:
    """Atomic because `take` never awaits: the event loop runs one batch at a time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, stamp)

    async def take(self, takes: Sequence[Take]) -> Outcome:
        return self.take_now(list(takes))

    def take_now(self, takes: list[Take]) -> Outcome:
        now = self._clock()
        current = [refill(*self._buckets.get(t.key, (None, None)), now, t) for t in takes]
        outcome = settle(current, takes)
        if outcome.allowed:
            for level in outcome.levels:
                self._buckets[level.take.key] = (level.tokens, now)
            if len(self._buckets) > _PRUNE_ABOVE:
                self._prune(now)
        return outcome

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely: a missing bucket reads as full."""
        for key, (tokens, stamp) in list(self._buckets.items()):
            if tokens >= 0 and now - stamp > _IDLE_SECONDS:
                del self._buckets[key]

    async def close(self) -> None:
        self._buckets.clear()
