"""uvicorn with a bounded, clean drain on SIGTERM.

uvicorn's graceful shutdown stops accepting connections and waits for in-flight requests; when
its timeout expires it cancels them, which cuts a stream off mid-chunk. Here the wait is
`shutdown_grace_seconds`; requests still generating after it are ended by stopping the models,
so each stream finishes with an error event and `data: [DONE]` and its usage row is written.
uvicorn's own timeout stays a few seconds later, as the backstop.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket

import uvicorn

from coderapi.services.container import Services

log = logging.getLogger("coderapi.server")

BACKSTOP_SECONDS = 10.0  # uvicorn's hard timeout, after ours


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, services: Services, grace_seconds: float) -> None:
        super().__init__(config)
        self.services = services
        self.grace_seconds = grace_seconds

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built so far (app, models, imports) lives as long as the server: moved out of
        # the collector's reach, a full collection no longer walks it (tens of ms per pause).
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        ender = asyncio.create_task(self._end_inflight_after_grace())
        try:
            await super().shutdown(sockets)
        finally:
            ender.cancel()

    async def _end_inflight_after_grace(self) -> None:
        await asyncio.sleep(self.grace_seconds)
        log.warning("shutdown: ending requests still running after %.0f s", self.grace_seconds)
        await self.services.end_inflight()


def run(app, *, host: str, port: int, log_level: str, grace_seconds: float) -> None:
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level,
        timeout_graceful_shutdown=grace_seconds + BACKSTOP_SECONDS,
    )
    DrainingServer(config, app.state.services, grace_seconds).run()
