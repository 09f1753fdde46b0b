"""The shared limiter: the same buckets in Redis, for several gateway replicas.

One Lua script refills and takes a whole batch atomically, on Redis's own clock (`TIME`), so
replicas with skewed clocks agree. The keys of one batch share a hash tag and so one cluster slot.
When Redis cannot be reached the limiter fails open (logs and admits): money limits are kept by
the database regardless, and an outage of the limiter should not become an outage of the API.
"""

from __future__ import annotations

import logging
from typing import Sequence

from coderapi.limits.bucket import Level, Outcome, Take

log = logging.getLogger("coderapi.limits")

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
    def __init__(self, url: str, *, namespace: str = "coderapi:rl:") -> None:
        import redis.asyncio as redis  # optional dependency: `pip install coderapi[redis]`

        self._errors = (redis.RedisError, OSError)
        self._client = redis.from_url(url)
        self._script = self._client.register_script(TAKE_SCRIPT)
        self._namespace = namespace

    async def take(self, takes: Sequence[Take]) -> Outcome:
        takes = list(takes)
        args: list[str] = []
        for t in takes:
            args += [repr(float(t.amount)), repr(float(t.capacity)), repr(float(t.refill_per_second))]
            args.append("1" if t.force else "0")
        try:
            reply = await self._script(keys=[self._namespace + t.key for t in takes], args=args)
        except self._errors as exc:
            log.warning("rate limiter unavailable (%s); admitting the request", type(exc).__name__)
            return Outcome(True, tuple(Level(t, t.capacity) for t in takes))
        allowed, *levels = reply
        return Outcome(bool(int(allowed)), tuple(Level(t, float(v)) for t, v in zip(takes, levels)))

    async def close(self) -> None:
        await self._client.aclose()
