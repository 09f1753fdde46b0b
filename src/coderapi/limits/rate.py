"""Per-key requests-per-minute (RPM) and tokens-per-minute (TPM) limits, over a limiter.

Each key has two buckets holding one minute's allowance and refilling continuously.

TPM accounting is *reserve, then settle*, as OpenAI's API does it: at admission a request
reserves its estimate (prompt length in bytes / 4, plus `max_tokens` times `n`, at most one
minute's allowance) together with one request, atomically; a request that does not fit is
refused with 429 before generation starts. Where the request ends (success, error, refusal or
hang-up) the difference between the reservation and the tokens really used is settled: unused
tokens go back, tokens beyond the estimate are taken anyway (the bucket may dip below zero and
the next requests wait for the refill). So concurrent requests cannot overshoot the limit by
more than their estimates were wrong, and a request is never cut short for tokens.
A limit of 0 (or less) switches that dimension off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from coderapi.errors import RateLimited
from coderapi.limits.bucket import Level, Outcome, Take
from coderapi.limits.headers import duration, ratelimit_headers

_WHAT = {"requests": "requests per minute (RPM)", "tokens": "tokens per minute (TPM)"}


class Limiter(Protocol):
    async def take(self, takes: Sequence[Take]) -> Outcome: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Quota:
    rpm: int
    tpm: int


@dataclass
class Reservation:
    """What one admitted request holds: `settle` it once, with the tokens it really used."""

    key_id: int
    quota: Quota
    tokens: int
    headers: dict[str, str] = field(default_factory=dict)


class RateLimits:
    def __init__(self, limiter: Limiter, *, default_rpm: int, default_tpm: int) -> None:
        self._limiter = limiter
        self._default = Quota(default_rpm, default_tpm)

    def quota(self, rpm: int | None = None, tpm: int | None = None) -> Quota:
        """The key's limits: the user's overrides where set, else the configured defaults."""
        return Quota(self._default.rpm if rpm is None else rpm, self._default.tpm if tpm is None else tpm)

    async def reserve(self, key_id: int, quota: Quota, tokens: int) -> Reservation:
        """Take one request and `tokens` tokens, or raise RateLimited (429, Retry-After) taking none."""
        tokens = max(0, min(tokens, quota.tpm)) if quota.tpm > 0 else 0
        takes = _takes(key_id, quota, requests=1, tokens=tokens)
        if not takes:
            return Reservation(key_id, quota, tokens)
        outcome = await self._limiter.take(list(takes.values()))
        levels = dict(zip(takes, outcome.levels))
        headers = ratelimit_headers(levels)
        if not outcome.allowed:
            raise _refusal(levels, headers)
        return Reservation(key_id, quota, tokens, headers)

    async def peek(self, key_id: int, quota: Quota) -> dict[str, str]:
        """The headers for a request that was not admitted (nothing is taken)."""
        takes = _takes(key_id, quota, requests=0, tokens=0)
        if not takes:
            return {}
        outcome = await self._limiter.take(list(takes.values()))
        return ratelimit_headers(dict(zip(takes, outcome.levels)))

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Give back what was reserved and not used, or take what was used beyond it."""
        if reservation.quota.tpm <= 0 or used_tokens == reservation.tokens:
            return
        take = _takes(reservation.key_id, reservation.quota, requests=0, tokens=0)["tokens"]
        difference = used_tokens - reservation.tokens
        await self._limiter.take([Take(take.key, difference, take.capacity, take.refill_per_second, force=True)])

    async def close(self) -> None:
        await self._limiter.close()


def _takes(key_id: int, quota: Quota, *, requests: int, tokens: int) -> dict[str, Take]:
    takes: dict[str, Take] = {}
    if quota.rpm > 0:
        takes["requests"] = Take(f"{{{key_id}}}:requests", requests, quota.rpm, quota.rpm / 60.0)
    if quota.tpm > 0:
        takes["tokens"] = Take(f"{{{key_id}}}:tokens", tokens, quota.tpm, quota.tpm / 60.0)
    return takes


def _refusal(levels: dict[str, Level], headers: dict[str, str]) -> RateLimited:
    short = {name: level for name, level in levels.items() if level.short}
    wait = max(level.retry_after for level in short.values())
    what = " and ".join(_WHAT[name] for name in short)
    limits = ", ".join(f"{name} limit {int(level.take.capacity)}" for name, level in short.items())
    message = f"Rate limit reached for {what} on this API key ({limits}). Please try again in {duration(wait)}."
    headers = {**headers, "retry-after-ms": str(max(1, round(wait * 1000)))}
    return RateLimited(message, retry_after=wait, headers=headers)
