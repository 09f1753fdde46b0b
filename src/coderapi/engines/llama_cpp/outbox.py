"""The worker's events on their way to the event loops that wait for them.

A step's events are gathered per loop and handed over in one `call_soon_threadsafe` per loop when
the step ends (`flush`). Each request counts the events sent to it (`Request.sent`), so the worker
can tell how far its reader is behind (sequences.py).
"""

from __future__ import annotations

from .sequences import Request


def _deliver(items: list) -> None:
    """Runs on the event loop: put each event (or exception) on its request's queue."""
    for req, item in items:
        req.queue.put_nowait(item)


class Outbox:
    """Worker thread only."""

    def __init__(self) -> None:
        self._items: dict = {}  # event loop -> [(request, event or exception)]

    def send(self, req: Request, item) -> None:
        req.sent += 1
        self._items.setdefault(req.loop, []).append((req, item))

    def flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, {}
        for loop, batch in items.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except Exception:  # that event loop is closed: nobody is listening any more
                for req, _ in batch:
                    req.cancelled = True
