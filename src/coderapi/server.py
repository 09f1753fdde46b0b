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

from coderapi.config import Settings
from coderapi.connection_guard import guarded_protocol
from coderapi.connection_limits import ConnectionPolicy, fit_open_files_limit
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


def connection_policy(settings: Settings) -> ConnectionPolicy:
    return ConnectionPolicy(
        header_timeout_seconds=settings.header_timeout_seconds,
        body_timeout_seconds=settings.body_timeout_seconds,
        send_timeout_seconds=settings.send_timeout_seconds,
        max_header_bytes=settings.max_header_bytes,
        max_connections=settings.max_connections,
        max_connections_per_client=settings.max_connections_per_client,
    )


def uvicorn_config(app, settings: Settings, policy: ConnectionPolicy | None = None) -> uvicorn.Config:
    """uvicorn with the connection guard (connection_guard.py) and no WebSocket upgrade (no route uses one)."""
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        http=guarded_protocol(policy or connection_policy(settings)), ws="none",
        timeout_graceful_shutdown=settings.shutdown_grace_seconds + BACKSTOP_SECONDS,
    )


def run(app, settings: Settings) -> None:
    policy = fit_open_files_limit(connection_policy(settings))
    DrainingServer(uvicorn_config(app, settings, policy), app.state.services, settings.shutdown_grace_seconds).run()
