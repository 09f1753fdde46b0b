"""The window every usage and log route reads: ?period= or ?start=&end=, and ?key_prefix=.

A dependency built per route: it first refuses a query parameter the route does not take (400
naming it), then parses the window, so each route declares these parameters once, here."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from coderapi.clock import utcnow
from coderapi.protocol.platform import check_query
from coderapi.services.usage_window import Window

WINDOW_PARAMS = frozenset({"period", "start", "end", "key_prefix"})


@dataclass(frozen=True)
class WindowQuery:
    window: Window
    key_prefix: str | None  # None: every key of the account


def window_query(more: set[str] = frozenset(), *, refused: dict[str, str] | None = None):
    """The dependency of a route that takes the window parameters and `more`."""
    allowed = WINDOW_PARAMS | set(more)

    async def read(
        request: Request, period: str | None = None, start: str | None = None, end: str | None = None,
        key_prefix: str | None = None,
    ) -> WindowQuery:
        check_query(request.query_params, allowed, refused=refused)
        return WindowQuery(Window.parse(period, start, end, utcnow()), key_prefix)

    return read
