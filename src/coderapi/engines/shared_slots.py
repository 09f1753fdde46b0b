"""Replica places shared by every gateway on one Redis: `upstream_slots` counted across gateways.

Each gateway's `GatewayQueue` orders its own waiting requests (fair_gate.py); with several gateways in
front of one pool, each counting `upstream_slots` alone would send up to N times that many. Here a
request that got its gateway's place also takes a lease in Redis, a sorted set of lease ids scored by
their expiry (Redis's own clock), taken only while fewer than `limit` are live. A gateway renews the
leases it holds every third of `lease_seconds`, so a gateway that dies gives its places back within
`lease_seconds`; a request cancelled while its take was in flight gives back the id it would have got.

Requests waiting for a lease queue in Redis too, in the order they first asked (a second sorted set
scored by an arrival counter, each entry dropped if its gateway stops asking for `QUEUE_SECONDS`), and
a free place goes to the first in that queue, so a gateway whose own request just ended does not take
the place from one that waited longer. A gateway keeps one entry in that queue while its requests wait,
and gives each lease it wins to the one its own order puts first (fair_gate.py's SharedGate), so
gateways with waiting requests take turns. An entry asks again every 5 ms doubling to 25 ms, and at
once when a lease of its own gateway is given back.

When Redis cannot be reached, `failure_mode` decides, as for the rate limiter (setting
`redis_failure_mode`): "open" lets the request go on with its gateway's place alone (each gateway then
counts only its own, as without Redis); "closed" refuses it with 503 `upstream_slots_unavailable`.
Redis is then asked again only every `RETRY_AFTER_SECONDS`, so a silent one costs one timeout per
retry, not one per request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

from coderapi.errors import ServiceUnavailable

log = logging.getLogger("coderapi.upstream")

TIMEOUT_SECONDS = 1.0  # connect and reply: a silent Redis must not hold requests longer
LEASE_SECONDS = 30.0
RETRY_AFTER_SECONDS = 2.0
QUEUE_SECONDS = 2.0  # a waiting request of a gateway that stopped asking leaves the queue after this
QUEUE_MS = int(QUEUE_SECONDS * 1000)
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.005, 0.025

# KEYS: the leases (id -> expiry), the queue (id -> arrival number), the queue's expiries (id -> expiry),
# the arrival counter (strict order: two requests in one millisecond are still first and second).
# ARGV: limit, lease ms, id, queue ms. 1 when the lease is taken, 0 when the id waits in the queue.
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, lease_ms, id, queue_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
end
if not redis.call('ZSCORE', KEYS[2], id) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), id)
end
redis.call('ZADD', KEYS[3], now + queue_ms, id)
local free = limit - redis.call('ZCARD', KEYS[1])
if free > 0 and redis.call('ZRANK', KEYS[2], id) < free then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[1], now + lease_ms, id)
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, lease_ms * 2)
  end
  return 1
end
for i = 2, 4 do
  redis.call('PEXPIRE', KEYS[i], queue_ms * 2)
end
return 0
"""

# KEYS[1]: the set. ARGV: lease ms, ids. Extends the ids still live; returns how many were.
RENEW_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = 0
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    live = live + 1
  end
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return live
"""


class SharedSlots:
    def __init__(
        self, url: str, key: str, limit: int, *, lease_seconds: float = LEASE_SECONDS, failure_mode: str = "open"
    ) -> None:
        import redis.asyncio as redis  # optional dependency: `pip install coderapi[redis]`

        if limit < 1:
            raise ValueError("shared slots need at least one place")
        self._errors = (redis.RedisError, OSError)
        self._client = redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
        self._take = self._client.register_script(TAKE_SCRIPT)
        self._renew = self._client.register_script(RENEW_SCRIPT)
        self.key = key
        # One hash tag in `key`: one cluster slot for all four.
        self._keys = [key, f"{key}:queue", f"{key}:queue-expiry", f"{key}:arrivals"]
        self.limit = limit
        self._lease_ms = int(lease_seconds * 1000)
        self._failure_mode = failure_mode
        self._ids = (f"{uuid.uuid4().hex}:{n}" for n in itertools.count())
        self._held: set[str] = set()
        self._released = asyncio.Event()
        self._waiting = 0
        self._renewer: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()  # referenced until done: the loop keeps tasks weakly
        self._down = False
        self._ask_again_at = 0.0  # while Redis is down, it is asked again only after this (monotonic)

    @property
    def waiting(self) -> int:
        """Requests asking for a lease now."""
        return self._waiting

    @property
    def held(self) -> int:
        return len(self._held)

    @asynccontextmanager
    async def place(self) -> AsyncIterator[None]:
        """One lease for the block."""
        lease = await self.take()
        try:
            yield
        finally:
            await self.give_back(lease)

    async def take(self) -> str | None:
        """A lease, once one is free and this request is first in the queue (None while Redis is down
        in the open mode). Give it back with `give_back`."""
        self._waiting += 1
        try:
            return await self._lease()
        finally:
            self._waiting -= 1

    async def _lease(self) -> str | None:
        if self._down and time.monotonic() < self._ask_again_at:
            self._unavailable(None)  # a silent Redis costs TIMEOUT_SECONDS a try: not one per request
            return None
        pause = FIRST_POLL_SECONDS
        lease = next(self._ids)  # its place in the queue, then its lease
        while True:
            try:
                taken = await self._take(keys=self._keys, args=[self.limit, self._lease_ms, lease, QUEUE_MS])
            except asyncio.CancelledError:
                self._forget_later(lease)  # out of the queue, and the lease a take in flight may have made
                raise
            except self._errors as exc:
                self._forget_later(lease)
                self._unavailable(exc)
                return None
            self._answered()
            if int(taken):
                self._held.add(lease)
                self._keep_renewing()
                return lease
            self._released.clear()
            try:
                await asyncio.wait_for(self._released.wait(), pause)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self._forget_later(lease)  # out of the queue at once, not after QUEUE_SECONDS
                raise
            pause = min(pause * 2, LAST_POLL_SECONDS)

    def return_later(self, lease: str | None) -> None:
        """`give_back` from code that cannot wait (a gate's synchronous hand-over)."""
        if lease is not None:
            self._spawn(self.give_back(lease))

    async def give_back(self, lease: str | None) -> None:
        if lease is None:
            return
        self._held.discard(lease)
        try:
            await asyncio.shield(self._client.zrem(self.key, lease))
        except self._errors as exc:  # it expires within lease_seconds
            log.warning("upstream slots: a lease was not given back (%s); it expires", type(exc).__name__)
        finally:
            self._released.set()  # once removed: a wait woken earlier would find the place still taken

    def _forget_later(self, lease: str) -> None:
        async def forget() -> None:
            try:
                for key in self._keys[:3]:
                    await self._client.zrem(key, lease)
            except self._errors:
                pass

        self._spawn(forget())

    def _spawn(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _keep_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_while_held())

    async def _renew_while_held(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease_ms / 3000)
            held = list(self._held)
            if not held:
                return
            try:
                live = int(await self._renew(keys=[self.key], args=[self._lease_ms, *held]))
            except self._errors as exc:
                log.warning("upstream slots: leases not renewed (%s)", type(exc).__name__)
                continue
            if live < len(held):  # this gateway stalled past lease_seconds: those places were freed
                log.warning("upstream slots: %d of %d leases had expired before renewal", len(held) - live, len(held))

    def _unavailable(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._ask_again_at = time.monotonic() + RETRY_AFTER_SECONDS
        if not self._down:
            self._down = True
            action = "each gateway counts its own" if self._failure_mode == "open" else "refusing requests (503)"
            log.warning("upstream slots: Redis unavailable (%s); %s until it answers", type(exc).__name__, action)
        if self._failure_mode != "open":
            raise ServiceUnavailable(
                "The shared count of upstream places is unavailable; please retry shortly.",
                retry_after=RETRY_AFTER_SECONDS,
                code="upstream_slots_unavailable",
            )

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.warning("upstream slots: Redis answers again; places are counted across gateways")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        held, self._held = list(self._held), set()
        if held:
            try:
                await self._client.zrem(self.key, *held)
            except self._errors:
                pass
        await self._client.aclose()
