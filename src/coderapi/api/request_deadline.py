"""No request outlives the money it holds.

A request's worst-case cost is held for `reservation_ttl_seconds` (from its own hold, or from the
credit lease it joined up to `credit_lease_seconds` after the lease's hold was taken); a hold that
lapses frees that money for other requests while this one would still be charged when it ends.
A stream read slowly enough (a few bytes at a time, never stalled for `send_timeout_seconds`) could
otherwise run past its hold and overspend the balance by its own cost. So every request is ended
at `Settings.request_time_limit_seconds`, before any hold it could have can lapse: cancelled where
it stands, billed for the tokens made (the stream stops without `[DONE]`, as when a client hangs up).
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coderapi.api.errors import render
from coderapi.errors import Overloaded

log = logging.getLogger("coderapi.api")


class RequestDeadlineMiddleware:
    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self._seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self._seconds) as limit:
                await self.app(scope, receive, watched_send)
        except TimeoutError:
            if not limit.expired():
                raise  # the app's own TimeoutError, not this limit: a fault rendered as any other
            log.warning("%s %s ended at its time limit (%.0f s)", scope["method"], scope["path"], self._seconds)
            if not started:
                await render(Overloaded(
                    f"The request ran past the server's time limit for one request ({self._seconds:g} s).",
                    code="request_time_limit",
                ))(scope, receive, send)
