"""Password hashing with argon2id (argon2-cffi's defaults), in a small pool of its own.

Every argon2 call is CPU-bound and slow by design (tens of milliseconds, 64 MiB). `PasswordPool`
runs them on a few dedicated threads, apart from the default thread pool that serves database
work such as API key lookups, so a flood of sign-ins cannot queue ahead of them. Its queue is
bounded: past it, a check is refused at once (Overloaded, 503 with Retry-After) instead of waiting
without end. The hashing threads run at a lower CPU priority, so the event loop and key lookups
win the cores when both want them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from coderapi.errors import Overloaded

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
HASHING_NICENESS = 10  # how much lower the hashing threads' CPU priority is (Linux: per thread)
RETRY_AFTER_SECONDS = 2.0

T = TypeVar("T")


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("coderapi-dummy-password")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check `password`; with no hash (unknown user) a dummy is checked, so both cost the same."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


def _lower_priority() -> None:
    """Thread initializer: nice this thread (and the threads argon2 starts from it, which inherit
    the value). Raising one's own niceness needs no privilege; where it is unsupported, skip."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
    except (AttributeError, OSError):
        pass


class PasswordPool:
    """`workers` hashing threads and at most `max_waiting` checks queued for them."""

    def __init__(self, workers: int = 1, max_waiting: int = 16) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self._lock = threading.Lock()  # not an asyncio lock: the CLI and tests use several loops
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """Checks running or queued now."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` on a hashing thread; Overloaded when the queue is full."""
        future = self._submit(fn, args)
        return await asyncio.wrap_future(future)

    def _submit(self, fn: Callable, args: tuple) -> Future:
        with self._lock:
            if self._pending >= self.workers + self.max_waiting:
                raise Overloaded(
                    "Too many sign-ins and sign-ups are being checked right now; try again shortly.",
                    retry_after=RETRY_AFTER_SECONDS, code="password_checks_busy",
                )
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.workers, thread_name_prefix="coderapi-argon2", initializer=_lower_priority
                )
            self._pending += 1
        # Released when the job ends or is cancelled before it starts (a client that went away),
        # never earlier: the queue's bound counts what the threads still have to do.
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._release)
        return future

    def _release(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # the argon2 work, run on the pool ----------------------------------------------------

    async def hash(self, password: str) -> str:
        return await self.run(hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self.run(verify_password, password_hash, password)
