"""Token-bucket arithmetic shared by the in-process and the Redis limiters.

A bucket holds up to `capacity` tokens and refills continuously at `refill_per_second`. A `Take`
asks for `amount` tokens: a strict take succeeds only when the bucket holds that many, a forced
take always applies (the level may go below zero: a debt the refill pays back), and a negative
forced take returns tokens (never above capacity). A batch of takes is all-or-nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Take:
    key: str
    amount: float
    capacity: float
    refill_per_second: float
    force: bool = False  # apply even when the bucket holds too little (settling actual usage)


@dataclass(frozen=True)
class Level:
    """A bucket's level after a batch (or, when the batch was refused, as it stands)."""

    take: Take
    tokens: float

    @property
    def remaining(self) -> int:
        return max(0, int(self.tokens))

    @property
    def seconds_to_full(self) -> float:
        return max(0.0, (self.take.capacity - self.tokens) / self.take.refill_per_second)

    @property
    def short(self) -> bool:
        """True when this bucket is the reason a strict take was refused."""
        return not self.take.force and self.take.amount > 0 and self.tokens < self.take.amount

    @property
    def retry_after(self) -> float:
        """Seconds until a refused take would succeed."""
        missing = min(self.take.amount, self.take.capacity) - self.tokens
        return max(0.0, missing / self.take.refill_per_second)


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    levels: tuple[Level, ...]


def refill(tokens: float | None, stamp: float | None, now: float, take: Take) -> float:
    """The level at `now` of a bucket last seen at (`tokens`, `stamp`); a new bucket starts full."""
    if tokens is None or stamp is None:
        return take.capacity
    return min(take.capacity, tokens + max(0.0, now - stamp) * take.refill_per_second)


def settle(current: list[float], takes: list[Take]) -> Outcome:
    """Apply a batch to the refilled levels `current`, all or nothing."""
    before = tuple(Level(t, level) for t, level in zip(takes, current))
    if any(level.short for level in before):
        return Outcome(False, before)
    after = tuple(Level(t, min(t.capacity, level - t.amount)) for t, level in zip(takes, current))
    return Outcome(True, after)
