"""A pool of model-server replicas: health checks and least-outstanding choice.

Used by the remote completion engine (raw completions) and by the upstream pass-through backend
(OpenAI requests forwarded as they are). `outstanding` counts requests in flight on a replica;
it only changes through `lease`, so every increment has exactly one decrement.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import httpx

from coderapi.errors import Overloaded

log = logging.getLogger("coderapi.upstream")


@dataclass
class Replica:
    base_url: str  # ends with /v1 for OpenAI-compatible servers
    healthy: bool = True  # optimistic until the first check says otherwise
    outstanding: int = 0

    @property
    def root(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url


class ReplicaPool:
    """`health_path` is appended to each replica's base URL (OpenAI servers: /models) or, when it
    starts with "//", to its root (llama-server's `//health` -> root + /health)."""

    def __init__(
        self, urls: list[str], client: httpx.AsyncClient, check_interval: float = 5.0, health_path: str = "/models"
    ) -> None:
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self._client = client
        self._interval = check_interval
        self._health_path = health_path
        self._checker: asyncio.Task | None = None

    @property
    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)

    @property
    def outstanding(self) -> int:
        return sum(r.outstanding for r in self.replicas)

    async def start(self) -> None:
        await self.check_all()
        self._checker = asyncio.create_task(self._check_forever())

    async def close(self) -> None:
        if self._checker:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    def health_url(self, replica: Replica) -> str:
        if self._health_path.startswith("//"):
            return replica.root + self._health_path[1:]
        return replica.base_url + self._health_path

    async def _check(self, replica: Replica) -> None:
        try:
            response = await self._client.get(self.health_url(replica), timeout=3.0)
            replica.healthy = response.status_code == 200
        except httpx.HTTPError:
            replica.healthy = False

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_all()

    def order(self) -> list[Replica]:
        """Healthy replicas, least outstanding first; the unhealthy last, as a final resort."""
        return sorted(self.replicas, key=lambda r: (not r.healthy, r.outstanding))

    @contextmanager
    def lease(self, replica: Replica) -> Iterator[Replica]:
        """Counts a request on `replica` for as long as the block runs, however it ends."""
        replica.outstanding += 1
        try:
            yield replica
        finally:
            replica.outstanding -= 1

    def mark_failed(self, replica: Replica) -> None:
        if replica.healthy:
            log.warning("upstream %s failed; routing around it until it answers a health check", replica.base_url)
        replica.healthy = False

    def none_left(self) -> Overloaded:
        return Overloaded("No upstream replica is available right now.", retry_after=5)
