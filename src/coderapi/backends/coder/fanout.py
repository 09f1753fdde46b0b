"""Run a request's choices (a few at a time) and interleave their deltas as they come."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from coderapi.backends.coder.choice import ChoiceDelta

_DONE = object()
_QUEUED_PER_RUNNER = 4  # deltas a running choice may have waiting for the consumer


async def interleave(streams: list[AsyncIterator[ChoiceDelta]], *, max_active: int) -> AsyncIterator[ChoiceDelta]:
    """Deltas of all `streams` as they come, running at most `max_active` of them at once.

    One task per running choice, not per choice: a request with many choices starts the next
    one when one ends, so it never floods the event loop or the engine's waiting queue.
    """
    if len(streams) == 1:
        async for delta in streams[0]:
            yield delta
        return
    runners = max(1, min(max_active, len(streams)))
    # Bounded, so that a consumer that reads slowly (a stream whose client reads slowly) stops the
    # runners and, through them, the engines, rather than have every delta pile up here.
    queue: asyncio.Queue = asyncio.Queue(maxsize=_QUEUED_PER_RUNNER * runners)
    waiting = iter(streams)  # shared by the runners: each takes the next choice when it is free

    async def runner() -> None:
        # Cancelled (the consumer is gone): nothing more is put, since nobody reads the queue.
        try:
            for stream in waiting:
                try:
                    async for delta in stream:
                        await queue.put(delta)
                finally:
                    await stream.aclose()
        except Exception as exc:  # forwarded to the consumer, who re-raises it
            await queue.put(exc)
        await queue.put(_DONE)

    tasks = [asyncio.create_task(runner()) for _ in range(runners)]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect(stream: AsyncIterator[ChoiceDelta], n: int) -> list[ChoiceDelta]:
    """Non-streaming: the whole text, logprobs and finish reason of each choice."""
    results = [ChoiceDelta(index=i) for i in range(n)]
    async for delta in stream:
        total = results[delta.index]
        total.text += delta.text
        total.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            total.finish_reason = delta.finish_reason
    return results
