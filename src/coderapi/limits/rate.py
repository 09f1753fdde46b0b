"""Per-key requests-per-minute (RPM) and tokens-per-minute (TPM) limits, over a limiter.

Each key has two buckets holding one minute's allowance and refilling continuously.

TPM accounting is *reserve, then settle*, as OpenAI's API does it: at admission a request
reserves its estimate (prompt length in bytes / 4, plus `max_tokens` times `n`, at most one
minute's allowance) together with one request, atomically (`reserve`; the inference services
reserve the request and its body's share before parsing the body, then `extend` it by the
completion budgets); a request that does not fit is refused with 429 before generation starts.
Where the request ends (success, error, refusal or hang-up) the difference between the reservation
and the tokens really used is settled: unused tokens go back, tokens beyond the estimate are taken
anyway (the bucket may dip below zero and the next requests wait for the refill). So concurrent requests cannot overshoot the limit by
more than their estimates were wrong, and a request is never cut short for tokens.
A limit of 0 (or less) switches that dimension off.

On top of each key's buckets, a user's keys together share a per-user pair (RPM and TPM; the
settings `default_user_rpm` / `default_user_tpm`), taken in the same all-or-nothing batch: more
keys do not multiply a user's limits.
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


@dataclass(frozen=True)
class Owner:
    """The user behind a key, and the ceiling all of that user's keys share."""

    user_id: int
    quota: Quota


@dataclass
class Reservation:
    """What one admitted request holds: `settle` it once, with the tokens it really used."""

    key_id: int
    quota: Quota
    tokens: int
    headers: dict[str, str] = field(default_factory=dict)
    owner: Owner | None = None


class RateLimits:
    def __init__(
        self, limiter: Limiter, *, default_rpm: int, default_tpm: int,
        default_user_rpm: int = 0, default_user_tpm: int = 0,
    ) -> None:
        self._limiter = limiter
        self._default = Quota(default_rpm, default_tpm)
        self._user_default = Quota(default_user_rpm, default_user_tpm)

    def quota(self, rpm: int | None = None, tpm: int | None = None) -> Quota:
        """The key's limits: the user's overrides where set, else the configured defaults."""
        return Quota(self._default.rpm if rpm is None else rpm, self._default.tpm if tpm is None else tpm)

    def owner(self, user_id: int, rpm: int | None = None, tpm: int | None = None) -> Owner:
        """The user's ceiling over all their keys: the configured default (0: none), raised to the
        user's per-key override where an administrator set a higher one."""
        def ceiling(default: int, override: int | None) -> int:
            return 0 if default <= 0 else max(default, override or 0)

        return Owner(user_id, Quota(ceiling(self._user_default.rpm, rpm), ceiling(self._user_default.tpm, tpm)))

    async def reserve(self, key_id: int, quota: Quota, tokens: int, owner: Owner | None = None) -> Reservation:
        """Take one request and `tokens` tokens from the key's buckets and (given an owner) the
        user's, all or none, or raise RateLimited (429, Retry-After)."""
        tokens = max(0, min(tokens, quota.tpm)) if quota.tpm > 0 else max(0, tokens)
        if owner is not None and owner.quota.tpm > 0:
            tokens = min(tokens, owner.quota.tpm)
        takes = _takes(key_id, quota, owner, requests=1, tokens=tokens)
        if not takes:
            return Reservation(key_id, quota, tokens, owner=owner)
        outcome = await self._limiter.take(list(takes.values()))
        levels = dict(zip(takes, outcome.levels))
        headers = ratelimit_headers({k: v for k, v in levels.items() if not k.startswith("user ")})
        if not outcome.allowed:
            raise _refusal(levels, headers)
        return Reservation(key_id, quota, tokens, headers, owner)

    async def extend(self, reservation: Reservation, tokens: int) -> None:
        """Take `tokens` more for a reservation already holding its request, all or none, within one
        minute's allowance together with what it holds, or raise RateLimited (what it holds stays)."""
        ceilings = [q.tpm for q in (reservation.quota, reservation.owner.quota if reservation.owner else None)
                    if q is not None and q.tpm > 0]
        tokens = max(0, min([tokens, *(c - reservation.tokens for c in ceilings)]))
        takes = _takes(reservation.key_id, reservation.quota, reservation.owner, requests=0, tokens=tokens)
        if not takes or not tokens:
            return
        outcome = await self._limiter.take(list(takes.values()))
        levels = dict(zip(takes, outcome.levels))
        headers = ratelimit_headers({k: v for k, v in levels.items() if not k.startswith("user ")})
        if not outcome.allowed:
            raise _refusal(levels, headers)
        reservation.tokens += tokens
        reservation.headers = headers

    async def peek(self, key_id: int, quota: Quota, owner: Owner | None = None) -> dict[str, str]:
        """The headers for a request that was not admitted (nothing is taken)."""
        takes = {k: t for k, t in _takes(key_id, quota, owner, requests=0, tokens=0).items() if not k.startswith("user ")}
        if not takes:
            return {}
        outcome = await self._limiter.take(list(takes.values()))
        return ratelimit_headers(dict(zip(takes, outcome.levels)))

    async def settle(self, reservation: Reservation, used_tokens: int) -> None:
        """Give back what was reserved and not used, or take what was used beyond it."""
        if used_tokens == reservation.tokens:
            return
        difference = used_tokens - reservation.tokens
        takes = _takes(reservation.key_id, reservation.quota, reservation.owner, requests=0, tokens=0)
        forced = [
            Take(t.key, difference, t.capacity, t.refill_per_second, force=True)
            for name, t in takes.items() if name.endswith("tokens")
        ]
        if forced:
            await self._limiter.take(forced)

    async def close(self) -> None:
        await self._limiter.close()


def _takes(key_id: int, quota: Quota, owner: Owner | None, *, requests: int, tokens: int) -> dict[str, Take]:
    """Named takes: "requests"/"tokens" for the key, "user requests"/"user tokens" for its owner.
    The bucket names of one batch share a hash tag (one Redis cluster slot)."""
    key_bucket = f"{{{key_id}}}" if owner is None else f"{{u{owner.user_id}}}:k{key_id}"
    takes: dict[str, Take] = {}
    if quota.rpm > 0:
        takes["requests"] = Take(f"{key_bucket}:requests", requests, quota.rpm, quota.rpm / 60.0)
    if quota.tpm > 0:
        takes["tokens"] = Take(f"{key_bucket}:tokens", tokens, quota.tpm, quota.tpm / 60.0)
    if owner is not None and owner.quota.rpm > 0:
        rpm = owner.quota.rpm
        takes["user requests"] = Take(f"{{u{owner.user_id}}}:user:requests", requests, rpm, rpm / 60.0)
    if owner is not None and owner.quota.tpm > 0:
        tpm = owner.quota.tpm
        takes["user tokens"] = Take(f"{{u{owner.user_id}}}:user:tokens", tokens, tpm, tpm / 60.0)
    return takes


def _refusal(levels: dict[str, Level], headers: dict[str, str]) -> RateLimited:
    short = {name: level for name, level in levels.items() if level.short}
    wait = max(level.retry_after for level in short.values())
    parts = []
    for name, level in short.items():
        whose = "your account (all its keys together)" if name.startswith("user ") else "this API key"
        what = _WHAT[name.removeprefix("user ")]
        parts.append(f"{what} on {whose} (limit {int(level.take.capacity)})")
    message = f"Rate limit reached for {' and '.join(parts)}. Please try again in {duration(wait)}."
    headers = {**headers, "retry-after-ms": str(max(1, round(wait * 1000)))}
    return RateLimited(message, retry_after=wait, headers=headers)
