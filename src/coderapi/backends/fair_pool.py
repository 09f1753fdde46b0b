"""A few threads of their own for one kind of slow work, shared fairly between users.

Work that costs the server real time per call (preparing an inference request, computing a usage
report over a large account) runs here rather than on the loop's default executor, which database
calls share: a flood of it cannot queue ahead of everyone's key lookups and holds. The queue in
front of the threads is bounded (503 with Retry-After past it), and fair between owners (users):
each owner has a queue of its own; a free thread takes the next job of the waiting owner with the
fewest jobs on the threads (among equals, the one served longest ago), and one owner may have at
most `max_queued_per_owner` jobs here at once (429 `concurrency_limit_exceeded` beyond). So one
user's flood delays another user's job by at most the work already on the threads.

Threads still share the GIL with the event loop, but the interpreter hands it back every few
milliseconds (and the database drivers release it while they wait), so /health and streaming
answers keep flowing meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, TypeVar

from coderapi.errors import Overloaded, RateLimited

T = TypeVar("T")

# Whose work the current task hands a pool (a user id); set by the services around a request.
_OWNER: ContextVar[Hashable | None] = ContextVar("coderapi_pool_owner", default=None)


@contextmanager
def working_for(owner: Hashable) -> Iterator[None]:
    """Work this task hands a pool from here on is queued as `owner`'s."""
    token = _OWNER.set(owner)
    try:
        yield
    finally:
        _OWNER.reset(token)


def current_owner() -> Hashable | None:
    """Whose work the current task does (`working_for`), e.g. to tell an engine whose request it runs."""
    return _OWNER.get()


@dataclass(eq=False)
class _Job:
    owner: Hashable | None
    work: Callable[..., Any]
    args: tuple
    done: asyncio.Future = field(repr=False)


class FairPool:
    """Created by `Services.build` (one per kind of work and app), closed with the app. Its queues
    are touched only on the event loop; the threads only run the work. `work` names what is queued
    in its refusals ("requests are being prepared")."""

    def __init__(
        self, threads: int, max_queued: int, max_queued_per_owner: int = 0, *,
        thread_name: str = "coderapi-pool", work: str = "jobs are waiting",
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=thread_name)
        self._work = work
        self._threads = threads
        self._capacity = threads + max_queued
        self._per_owner = max_queued_per_owner  # 0: no cap per owner
        self._waiting: dict[Hashable | None, deque[_Job]] = {}
        self._held: dict[Hashable | None, int] = {}  # per owner: waiting or running
        self._active: dict[Hashable | None, int] = {}  # per owner: running
        self._served: dict[Hashable | None, int] = {}  # per owner holding jobs: the turn it last started one
        self._turn = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Requests waiting or running (the per-owner maps hold only owners with some: a few sums)."""
        return sum(self._held.values())

    def _running(self) -> int:
        return sum(self._active.values())

    async def run(self, work: Callable[..., T], *args) -> T:
        """`work(*args)` on a thread, in the turn of the owner the task works for (`working_for`)."""
        return await self.run_for(_OWNER.get(), work, *args)

    async def run_for(self, owner: Hashable | None, work: Callable[..., T], *args) -> T:
        """`work(*args)` on a thread, in `owner`'s turn; 503 at once when the pool is full, 429
        when the owner already has its share waiting or running."""
        self._admit(owner)
        job = _Job(owner, work, args, asyncio.get_running_loop().create_future())
        self._held[owner] = self._held.get(owner, 0) + 1
        self._waiting.setdefault(owner, deque()).append(job)
        self._dispatch()
        try:
            return await job.done  # a cancelled caller cancels it: `_finished` then drops the result
        finally:
            self._forget(job)

    def _admit(self, owner: Hashable | None) -> None:
        if self._closed:
            raise Overloaded("The server is shutting down.", retry_after=5)
        pending = self.pending
        if pending >= self._capacity:
            raise Overloaded(f"Too many {self._work} ({pending}); retry shortly.", retry_after=1)
        if self._per_owner and owner is not None and self._held.get(owner, 0) >= self._per_owner:
            raise RateLimited(
                f"Too many of your {self._work} at once (at most {self._per_owner}); "
                "wait for one to finish, then retry.",
                retry_after=1,
                code="concurrency_limit_exceeded",
            )

    def _forget(self, job: _Job) -> None:
        """The job's caller is done with it (answered, failed or cancelled): it leaves its queue if
        it never started (a running one finishes on its thread; nobody reads its result)."""
        self._held[job.owner] -= 1
        if not self._held[job.owner]:
            del self._held[job.owner]
            self._served.pop(job.owner, None)
        queue = self._waiting.get(job.owner)
        if queue is not None and job in queue:
            queue.remove(job)
            if not queue:
                del self._waiting[job.owner]

    def _dispatch(self) -> None:
        """Start waiting jobs while threads are free: the next job of the waiting owner with the
        fewest jobs running, among equals the one served longest ago (never: first)."""
        while self._waiting and not self._closed and self._running() < self._threads:
            owner = min(self._waiting, key=self._turn_order)
            queue = self._waiting[owner]
            job = queue.popleft()
            if not queue:
                del self._waiting[owner]
            self._turn += 1
            self._served[owner] = self._turn
            self._active[owner] = self._active.get(owner, 0) + 1
            started = self._executor.submit(job.work, *job.args)
            started.add_done_callback(lambda ran, job=job: self._report(job, ran))

    def _turn_order(self, owner: Hashable | None) -> tuple[int, int]:
        return self._active.get(owner, 0), self._served.get(owner, -1)

    def _report(self, job: _Job, ran: Future) -> None:
        """On the worker thread: hand the outcome to the loop (gone once the app has closed)."""
        try:
            job.done.get_loop().call_soon_threadsafe(self._finished, job, ran)
        except RuntimeError:
            pass

    def _finished(self, job: _Job, ran: Future) -> None:
        self._active[job.owner] -= 1
        if not self._active[job.owner]:
            del self._active[job.owner]
        if not job.done.done():
            if ran.cancelled():
                job.done.set_exception(Overloaded("The server is shutting down.", retry_after=5))
            elif ran.exception() is not None:
                job.done.set_exception(ran.exception())
            else:
                job.done.set_result(ran.result())
        self._dispatch()

    def close(self) -> None:
        """Waiting work is dropped (its callers get 503); work already running finishes on its thread."""
        self._closed = True
        for queue in self._waiting.values():
            for job in queue:
                if not job.done.done():
                    job.done.set_exception(Overloaded("The server is shutting down.", retry_after=5))
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


async def run_on(pool: FairPool | None, owner: Hashable | None, work: Callable[..., T], *args) -> T:
    """`work(*args)` on `pool` as `owner`'s, or on the default executor without a pool (the CLI, tests)."""
    if pool is None:
        return await asyncio.to_thread(work, *args)
    return await pool.run_for(owner, work, *args)
