"""Non-streamed inference stops when its client hangs up.

A streamed answer notices a gone client when a chunk cannot be sent; a non-streamed one would
otherwise run to its end for nobody (an editor cancels most of its fill-in-the-middle requests
as the user types on). The route awaits the work and the client's `http.disconnect` together;
a disconnect first cancels the work, which the service records as cancelled (499,
client_disconnected) with the tokens generated so far, and which closes the engine's sequence.

The body itself is read by the service, through `RequestBody`, once the request holds its in-flight
place (so a key's bodies in memory are bounded by its cap); the watcher listens only after that, as
until then the request's ASGI messages are the body's.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Awaitable, TypeVar

from fastapi import Request
from starlette.requests import ClientDisconnect

from coderapi.services.request_life import ClientLeft

T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up before the answer was ready."""


class RequestBody:
    """Reads a request's body once, when the service asks for it (`read`), and says when it has
    (`received`): until then the body's messages are the reader's, not the disconnect watcher's."""

    def __init__(self, request: Request) -> None:
        self._request = request
        self.received = asyncio.Event()

    async def read(self) -> bytes:
        try:
            body = await self._request.body()
        except ClientDisconnect:
            raise ClientLeft from None
        self.received.set()
        return body


async def _disconnected(request: Request, body: RequestBody | None) -> None:
    if body is not None:
        await body.received.wait()
    # The body has been read: the next ASGI message is the disconnect (uvicorn sends nothing else).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Awaitable[T], body: RequestBody | None = None) -> T:
    """`work`'s result; cancels it and raises ClientGone if the client hangs up first (watched
    once `body`, which `work` reads, has been received)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.create_task(_disconnected(request, body))
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
