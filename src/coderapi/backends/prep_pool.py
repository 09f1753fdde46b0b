"""The threads that prepare inference requests, so their CPU work never runs on the event loop.

Preparing a request (checking tool and response_format schemas, building grammars, rendering the
chat template, tokenizing prompts, converting logit_bias) is plain CPU work whose cost grows with
the request. It runs here, on a few threads of its own rather than the loop's default executor
(which database calls and password hashing share), and the queue in front of them is bounded: a
flood of heavy requests is answered 503 with Retry-After instead of piling up. The protocol caps
(`coderapi.protocol.limits`) and the body size limit bound the work of each request.

Threads still share the GIL with the event loop, but the interpreter hands it back every few
milliseconds, so /health and streaming answers keep flowing while a request is prepared.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from coderapi.errors import Overloaded

T = TypeVar("T")


class PrepPool:
    """Created by `Services.build` (one per app), closed with the app."""

    def __init__(self, threads: int, max_queued: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="coderapi-prepare")
        self._capacity = threads + max_queued
        self._pending = 0  # touched only on the event loop
        self._closed = False

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, work: Callable[..., T], *args) -> T:
        """`work(*args)` on a preparation thread; 503 at once when the queue is full."""
        if self._closed:
            raise Overloaded("The server is shutting down.", retry_after=5)
        if self._pending >= self._capacity:
            raise Overloaded(
                f"Too many requests are being prepared ({self._pending}); retry shortly.", retry_after=1
            )
        self._pending += 1
        try:
            return await asyncio.wrap_future(self._executor.submit(work, *args))
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Queued work is dropped; work already running finishes on its thread."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
