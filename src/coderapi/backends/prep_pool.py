"""The threads that prepare inference requests, so their CPU work never runs on the event loop.

Preparing a request (checking tool and response_format schemas, building grammars, rendering the
chat template, tokenizing prompts, converting logit_bias) is plain CPU work whose cost grows with
the request. It runs here, on a few threads of its own rather than the loop's default executor
(which database calls and password hashing share), and the queue in front of them is bounded: a
flood of heavy requests is answered 503 with Retry-After instead of piling up. The protocol caps
(`coderapi.protocol.limits`), the body size limit and the context (a prompt is tokenized only
until it is found too long: `engines.token_limit`) bound the work of each request.

The queue is fair between users: each user (the owner the request's task names, `preparing_for`)
has a queue of its own; a free thread takes the next request of the waiting user with the fewest
requests on the threads (among equals, the one served longest ago), and one user may have at most
`max_queued_per_owner` requests here at once (429 beyond). So one user's flood of heavy requests
delays another user's request by at most the work already on the threads, instead of filling the
queue every request waits in.

Threads still share the GIL with the event loop, but the interpreter hands it back every few
milliseconds, so /health and streaming answers keep flowing while a request is prepared.
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

# Whose request the current task prepares (a user id); set by the services around a request.
_OWNER: ContextVar[Hashable | None] = ContextVar("coderapi_prep_owner", default=None)


@contextmanager
def preparing_for(owner: Hashable) -> Iterator[None]:
    """Work this task hands the pool from here on is queued as `owner`'s."""
    token = _OWNER.set(owner)
    try:
        yield
    finally:
        _OWNER.reset(token)


@dataclass(eq=False)
class _Job:
    owner: Hashable | None
    work: Callable[..., Any]
    args: tuple
    done: asyncio.Future = field(repr=False)


class PrepPool:
    """Created by `Services.build` (one per app), closed with the app. Its queues are touched only
    on the event loop; the threads only run the work."""

    def __init__(self, threads: int, max_queued: int, max_queued_per_owner: int = 0) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="coderapi-prepare")
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
        """`work(*args)` on a preparation thread, in its owner's turn; 503 at once when the pool is
        full, 429 when the owner already has its share waiting or running."""
        owner = _OWNER.get()
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
            raise Overloaded(f"Too many requests are being prepared ({pending}); retry shortly.", retry_after=1)
        if self._per_owner and owner is not None and self._held.get(owner, 0) >= self._per_owner:
            raise RateLimited(
                f"Too many of your requests are being prepared at once (at most {self._per_owner}); "
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
