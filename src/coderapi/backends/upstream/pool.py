"""A pool of OpenAI-compatible replicas: health checks and least-outstanding choice."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
import httpx

from coderapi.errors import Overloaded

log = logging.getLogger("coderapi.upstream")


@dataclass
class Replica:
    base_url: str  # ends with /v1
    healthy: bool = True  # optimistic until the first check says otherwise
    outstanding: int = 0

    @property
    def root(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url


class ReplicaPool:
    def __init__(self, urls: list[str], client: httpx.AsyncClient, check_interval: float = 5.0) -> None:
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self._client = client
        self._interval = check_interval
        self._checker: asyncio.Task | None = None

    @property
    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)

    async def start(self) -> None:
        await self.check_all()
        self._checker = asyncio.create_task(self._check_forever())

    async def close(self) -> None:
        if self._checker:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(r) for r in self.replicas))

    async def _check(self, replica: Replica) -> None:
        try:
            response = await self._client.get(replica.base_url + "/models", timeout=3.0)
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

    def mark_failed(self, replica: Replica) -> None:
        if replica.healthy:
            log.warning("upstream %s failed; routing around it until it answers a health check", replica.base_url)
        replica.healthy = False

    def none_left(self) -> Overloaded:
        return Overloaded("No upstream replica is available right now.", retry_after=5)
