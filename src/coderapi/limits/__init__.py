"""Rate limits: token buckets in-process by default, in Redis when several replicas share them."""

from __future__ import annotations

from coderapi.limits.memory import MemoryLimiter
from coderapi.limits.rate import Limiter, Owner, Quota, RateLimits, Reservation

__all__ = ["Limiter", "MemoryLimiter", "Owner", "Quota", "RateLimits", "Reservation", "build_limiter"]


def build_limiter(redis_url: str | None, failure_mode: str = "open") -> Limiter:
    """`failure_mode`: what the Redis limiter does while Redis is unreachable ("open" or "closed")."""
    if not redis_url:
        return MemoryLimiter()
    from coderapi.limits.redis_limiter import RedisLimiter

    return RedisLimiter(redis_url, failure_mode=failure_mode)
