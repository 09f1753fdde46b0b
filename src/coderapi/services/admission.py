"""Who may start an inference request, checked before generation starts, cheapest check first.

1. The key: an inference key with the `model:chat` scope (403 otherwise).
2. Its requests running at once on this gateway, per key and per user (429
   `concurrency_limit_exceeded`; see `coderapi.services.in_flight`).
3. Its rate limits: one request and the request's token estimate (every prompt, every choice)
   from the key's RPM/TPM buckets and from the user's, which all the user's keys share (429 with
   Retry-After; see `coderapi.limits.rate` for how tokens are reserved and settled). The request
   and its body's share of the estimate (bytes / 4) are taken before the body is parsed: parsing
   4 MiB of JSON structure (two million token ids, 170,000 content parts) holds the event loop
   for 0.1-0.4 s, so how often one key can have that done is bounded by its limits, and a request
   that ends having processed nothing (invalid, refused) keeps its body's tokens counted, as it
   keeps its request. The completion budgets are added once the body is read, before the model is
   resolved, so a request naming an unknown model is rate-limited too.
4. Money: the request's worst-case cost is reserved against the user's balance and the key's
   spending limit: from the key's credit lease on this gateway (see `services.credit_leases`), or
   atomically in the database (see `coderapi.services.reservations`), which also takes leases: 403
   `insufficient_quota` or `spending_limit_exceeded` when it does not fit (never 429: the `openai`
   SDK retries 429, and retrying adds no credit). The hold is settled where the request ends, so
   a balance never goes below zero, however many requests run at once.

Every inference answer after authentication carries the `x-ratelimit-*` headers: admitted
requests get them from their reservation, refused and failed ones from `label`.
"""

from __future__ import annotations

from typing import Callable

from coderapi.config import ModelSpec
from coderapi.errors import AuthenticationFailed, CoderapiError, PermissionDenied, RateLimited, ServiceUnavailable
from coderapi.limits import RateLimits
from coderapi.limits.rate import Reservation
from coderapi.services.account_types import Principal
from coderapi.services.cost_estimate import BYTES_PER_TOKEN, estimate_tokens, worst_case_cost
from coderapi.services.in_flight import InFlightLimits
from coderapi.services.key_cache import KeyCache
from coderapi.services.credit_leases import CostHold, CreditLeases
from coderapi.services.reservations import CostReservations, KeyChanged

_KEY_CHANGES_TOLERATED = 3  # a key changed again between two tries: give up with a 503

CHAT_SCOPE = "model:chat"

__all__ = ["CHAT_SCOPE", "Admission", "check_key", "estimate_tokens"]


def check_key(principal: Principal) -> None:
    if principal.key_kind != "inference":
        raise PermissionDenied(
            "Management keys cannot call inference endpoints; use an inference key.",
            code="wrong_key_kind",
        )
    if CHAT_SCOPE not in principal.scopes:
        raise PermissionDenied(f"This key lacks the `{CHAT_SCOPE}` scope.", code="missing_scope")


class Admission:
    """The checks, each a step the request's lifecycle (`services.lifecycle`) runs in order and
    whose holds it gives back where the request ends."""

    def __init__(
        self, limits: RateLimits, reservations: CostReservations, in_flight: InFlightLimits,
        leases: CreditLeases, keys: KeyCache,
    ) -> None:
        self._limits = limits
        self._reservations = reservations
        self._in_flight = in_flight
        self._leases = leases
        self._keys = keys

    def count_in(self, principal: Principal) -> Callable[[], None]:
        """One more request running for the key and the user (429 over the caps); the returned
        function counts it out (once)."""
        return self._in_flight.acquire(principal)

    def _buckets(self, principal: Principal):
        quota = self._limits.quota(principal.rpm_limit, principal.tpm_limit)
        return quota, self._limits.owner(principal.user_id, principal.rpm_limit, principal.tpm_limit)

    async def limit_body(self, principal: Principal, body_size: int) -> Reservation:
        """Take one request and its body's prompt estimate (bytes / 4) from the rate limits, before
        the body is parsed. Settle it with `settle_rate` where the request ends."""
        quota, owner = self._buckets(principal)
        return await self._limits.reserve(principal.key_id, quota, body_size // BYTES_PER_TOKEN, owner)

    async def limit_completion(self, reservation: Reservation, spec: ModelSpec | None, request, body_size: int) -> None:
        """Add the rest of the request's estimate (every sequence's completion budget; spec None: the
        model is not known, so no default budget) to the reservation `limit_body` made."""
        await self._limits.extend(reservation, estimate_tokens(request, body_size, spec) - body_size // BYTES_PER_TOKEN)

    async def settle_rate(self, reservation: Reservation, used_tokens: int) -> None:
        await self._limits.settle(reservation, used_tokens)

    async def reserve_cost(
        self, principal: Principal, spec: ModelSpec, request, body_size: int, request_id: str
    ) -> tuple[CostHold, Principal]:
        """Hold the worst-case cost (given back with the usage record; from the key's credit lease
        where it has one, see `credit_leases`) and the key as it is now. The principal may come
        from the key cache, valid in the auth epoch the request read; a hold's transaction also
        checks it against its row."""
        amount = worst_case_cost(request, body_size, spec)
        for _ in range(_KEY_CHANGES_TOLERATED):
            try:
                hold = await self._leases.hold(principal, request_id, amount, epoch=self._keys.epoch, confirm_key=True)
                return hold, principal
            except KeyChanged as changed:  # scopes or limits changed since it was cached: admit it as it is
                principal = changed.fresh
                self._keys.refresh(principal)
                check_key(principal)
            except (AuthenticationFailed, PermissionDenied) as exc:
                if isinstance(exc, AuthenticationFailed) or exc.code in ("key_disabled", "user_disabled"):
                    self._keys.forget(principal.key_id)
                raise
        raise ServiceUnavailable("This API key is being changed; please retry.", retry_after=1, code="key_changing")

    async def key_verdict(self, principal: Principal, error: CoderapiError, held: bool) -> CoderapiError | None:
        """A request turned away before its hold (bad body, rate limit, unknown model) was let in
        on a possibly cached key: the key's own refusal if it is now disabled or deleted, else None."""
        if held or isinstance(error, (AuthenticationFailed, PermissionDenied, ServiceUnavailable)):
            return None
        try:
            verdict = await self._reservations.confirm_key(principal)
        except ServiceUnavailable:
            return None
        if isinstance(verdict, KeyChanged):
            self._keys.refresh(verdict.fresh)
        elif verdict is not None:
            self._keys.forget(principal.key_id)
            return verdict
        return None

    async def label(self, error: CoderapiError, principal: Principal, headers: dict[str, str]) -> None:
        """Put the rate-limit headers on an error answer (a refused 429 has its own already)."""
        if not headers and not isinstance(error, RateLimited):
            quota, owner = self._buckets(principal)
            headers.update(await self._limits.peek(principal.key_id, quota, owner))
        for name, value in headers.items():
            error.headers.setdefault(name, value)
