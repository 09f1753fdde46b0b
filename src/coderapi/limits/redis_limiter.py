"""The shared limiter: the same buckets in Redis, for several gateway replicas.

One Lua script refills and takes a whole batch atomically, on Redis's own clock (`TIME`), so
replicas with skewed clocks agree. The keys of one batch share a hash tag and so one cluster slot.

When Redis cannot be reached (refused, reset, or silent for `TIMEOUT_SECONDS`), `failure_mode`
decides (setting `redis_failure_mode`):

- "open" (the default): the batch is taken from an in-process `MemoryLimiter` instead, so every
  gateway still enforces each key's limits on its own traffic (with N replicas a key can get up to
  N times its limit while Redis is down). Money is kept by the database either way, and the
  engine's queue bound answers 503 on overload, so a limiter outage need not be an API outage.
- "closed": the request is refused with 503 `rate_limiter_unavailable` and Retry-After.

Each command retries the connection, so the Redis buckets are used again as soon as Redis
answers; the outage and the recovery are logged once each.
"""

from __future__ import annotations

import logging
from typing import Sequence

from coderapi.errors import ServiceUnavailable
from coderapi.limits.bucket import Level, Outcome, Take
from coderapi.limits.memory import MemoryLimiter

log = logging.getLogger("coderapi.limits")

FAILURE_MODES = ("open", "closed")
TIMEOUT_SECONDS = 1.0  # connect and reply; a silent Redis must not hold requests longer
RETRY_AFTER_SECONDS = 2.0  # in the 503 of the closed mode

# KEYS: one bucket per take. ARGV: amount, capacity, refill_per_second, force ('1'/'0') per take.
# Returns {allowed, level_1, ..., level_n}; levels as strings (Lua numbers would be truncated).
TAKE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 4
  local amount, capacity, rate = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local state = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens, stamp = tonumber(state[1]), tonumber(state[2])
  local level = capacity
  if tokens and stamp then
    level = math.min(capacity, tokens + math.max(0, now - stamp) * rate)
  end
  levels[i] = level
  if ARGV[b + 4] ~= '1' and amount > 0 and level < amount then
    allowed = 0
  end
end
local out = {allowed}
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 4
  local amount, capacity, rate = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local level = levels[i]
  if allowed == 1 then
    level = math.min(capacity, level - amount)
    redis.call('HSET', key, 'tokens', tostring(level), 'stamp', tostring(now))
    redis.call('PEXPIRE', key, math.ceil((capacity - level) / rate * 1000) + 1000)
  end
  out[i + 1] = tostring(level)
end
return out
"""


class RedisLimiter:
    def __init__(self, url: str, *, namespace: str = "coderapi:rl:", failure_mode: str = "open") -> None:
        import redis.asyncio as redis  # optional dependency: `pip install coderapi[redis]`

        if failure_mode not in FAILURE_MODES:
            raise ValueError(f"failure_mode must be one of {FAILURE_MODES}, not {failure_mode!r}")
        self._errors = (redis.RedisError, OSError)
        self._client = redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
        self._script = self._client.register_script(TAKE_SCRIPT)
        self._namespace = namespace
        self._failure_mode = failure_mode
        self._fallback = MemoryLimiter()  # fail-open: this process's own buckets while Redis is down
        self._down = False

    async def take(self, takes: Sequence[Take]) -> Outcome:
        takes = list(takes)
        args: list[str] = []
        for t in takes:
            args += [repr(float(t.amount)), repr(float(t.capacity)), repr(float(t.refill_per_second))]
            args.append("1" if t.force else "0")
        try:
            reply = await self._script(keys=[self._namespace + t.key for t in takes], args=args)
        except self._errors as exc:
            return self._unavailable(takes, exc)
        if self._down:
            self._down = False
            log.warning("rate limiter: Redis answers again; using the shared buckets")
        allowed, *levels = reply
        return Outcome(bool(int(allowed)), tuple(Level(t, float(v)) for t, v in zip(takes, levels)))

    def _unavailable(self, takes: list[Take], exc: BaseException) -> Outcome:
        if not self._down:
            self._down = True
            action = "using in-process limits" if self._failure_mode == "open" else "refusing requests (503)"
            log.warning("rate limiter: Redis unavailable (%s); %s until it answers", type(exc).__name__, action)
        if self._failure_mode == "open":
            return self._fallback.take_now(takes)
        raise ServiceUnavailable(
            "The rate limiter is unavailable; please retry shortly.",
            retry_after=RETRY_AFTER_SECONDS,
            code="rate_limiter_unavailable",
        )

    async def close(self) -> None:
        await self._client.aclose()
