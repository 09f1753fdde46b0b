"""Non-streamed inference stops when its client hangs up.

A streamed answer notices a gone client when a chunk cannot be sent; a non-streamed one would
otherwise run to its end for nobody (an editor cancels most of its fill-in-the-middle requests
as the user types on). The route awaits the work and the client's `http.disconnect` together;
a disconnect first cancels the work, which the service records as cancelled (499,
client_disconnected) with the tokens generated so far, and which closes the engine's sequence.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Awaitable, TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up before the answer was ready."""


async def _disconnected(request: Request) -> None:
    # The body has been read: the next ASGI message is the disconnect (uvicorn sends nothing else).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; cancels it and raises ClientGone if the client hangs up first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
    if task.done():
        return task.result()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    raise ClientGone
