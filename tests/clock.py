"""A clock for tests: it tells the time it is set to, and tests move it by assigning `now`."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class FixedClock(Generic[T]):
    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now
