"""How many requests an engine holds at once, and how many of them one owner may hold.

An engine runs `n_parallel` sequences and lets `max_waiting` more wait for a slot; past that it
refuses (503 `overloaded`). The waiting places are everyone's, and every choice of a request is a
request here (a chat with `n: 8` holds 8), so without a share per owner one user's few requests
filled them all and every other caller was refused, or queued behind all of it, until they ended.
An owner (a user; requests without one count as one owner) may hold at most `n_parallel +
max_waiting_per_owner` requests, past which it is refused with 429 `concurrency_limit_exceeded`:
others always find a place, and the engine admits owners in turn (llama_cpp/scheduler.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Hashable

from coderapi.errors import Overloaded, RateLimited

RETRY_AFTER_SECONDS = 1.0


class EngineCapacity:
    """Counts the requests an engine holds (started and not finished), in all and per owner.

    Thread-safe: a consumer may count its request out from wherever it ends."""

    def __init__(self, n_parallel: int, max_waiting: int, max_waiting_per_owner: int | None = None) -> None:
        if n_parallel < 1 or max_waiting < 0 or (max_waiting_per_owner is not None and max_waiting_per_owner < 0):
            raise ValueError("n_parallel >= 1, max_waiting >= 0 and max_waiting_per_owner >= 0 (or None) required")
        self.n_parallel = n_parallel
        self.max_waiting = max_waiting
        self._total_cap = n_parallel + max_waiting
        self._owner_cap = None if max_waiting_per_owner is None else n_parallel + max_waiting_per_owner
        self._lock = threading.Lock()
        self._held = 0
        self._by_owner: Counter[Hashable] = Counter()

    @property
    def held(self) -> int:
        return self._held

    def held_by(self, owner: Hashable) -> int:
        return self._by_owner[owner]

    def check(self, owner: Hashable) -> None:
        """Raise as `enter` would, counting nothing (a request refused before its stream starts)."""
        with self._lock:
            self._check(owner)

    def enter(self, owner: Hashable) -> None:
        with self._lock:
            self._check(owner)
            self._held += 1
            self._by_owner[owner] += 1

    def leave(self, owner: Hashable) -> None:
        with self._lock:
            self._held -= 1
            self._by_owner[owner] -= 1
            if self._by_owner[owner] <= 0:
                del self._by_owner[owner]  # idle owners take no memory

    def _check(self, owner: Hashable) -> None:
        # The owner's share first: a user at their share is told so, even when the engine is full too.
        if self._owner_cap is not None and self._by_owner[owner] >= self._owner_cap:
            raise RateLimited(
                f"Your requests already hold {self._by_owner[owner]} of the model's places (each choice "
                f"of a request holds one); at most {self._owner_cap} per user, running or waiting. "
                "Wait for some to finish, then retry.",
                retry_after=RETRY_AFTER_SECONDS,
                code="concurrency_limit_exceeded",
            )
        if self._held >= self._total_cap:
            raise Overloaded(
                f"The model is busy ({self.n_parallel} running, {self.max_waiting} waiting); retry shortly.",
                retry_after=RETRY_AFTER_SECONDS,
            )
