"""Who may start an inference request, checked before generation starts, cheapest check first.

1. The key: an inference key with the `model:chat` scope (403 otherwise).
2. Its rate limits: one request and the request's token estimate from the key's RPM/TPM buckets
   (429 with Retry-After; see `coderapi.limits.rate` for how tokens are reserved and settled).
3. Money: a user at zero (or negative) balance gets 403 `insufficient_quota`, a key at or over
   its spending limit for the current period 403 `spending_limit_exceeded` (never 429: the
   `openai` SDK retries 429, and retrying adds no credit). The balance comes with the key's
   authentication, so only keys with a spending limit cost one more query here, a small one
   (see `spending`). Requests already running when the money runs out finish, so a balance can
   end slightly below zero.

Every inference answer after authentication carries the `x-ratelimit-*` headers: admitted
requests get them from their reservation, refused and failed ones from `label`.
"""

from __future__ import annotations

from coderapi.config import ModelSpec
from coderapi.errors import CoderapiError, PermissionDenied, QuotaExceeded, RateLimited
from coderapi.limits import RateLimits
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.services.accounts import Principal
from coderapi.services.metering import MeterScope
from coderapi.services.spending import PeriodSpend

CHAT_SCOPE = "model:chat"
BYTES_PER_TOKEN = 4  # prompt estimate for the TPM reservation; settled with the real count
_PERIODS = {"no_reset": "in total", "day": "per day", "week": "per week", "month": "per month"}


def check_key(principal: Principal) -> None:
    if principal.key_kind != "inference":
        raise PermissionDenied(
            "Management keys cannot call inference endpoints; use an inference key.",
            code="wrong_key_kind",
        )
    if CHAT_SCOPE not in principal.scopes:
        raise PermissionDenied(f"This key lacks the `{CHAT_SCOPE}` scope.", code="missing_scope")


def estimate_tokens(request, body_size: int, spec: ModelSpec) -> int:
    """Prompt (body bytes / 4) plus the completion budget of every choice asked for."""
    if isinstance(request, ChatCompletionRequest):
        budget = request.max_completion_tokens or request.max_tokens
    else:
        budget = getattr(request, "max_tokens", None)
    choices = max(getattr(request, "n", None) or 1, getattr(request, "best_of", None) or 1)
    return body_size // BYTES_PER_TOKEN + (budget or spec.generation.max_tokens) * choices


class Admission:
    def __init__(self, limits: RateLimits, spend: PeriodSpend) -> None:
        self._limits = limits
        self._spend = spend

    async def admit(self, principal: Principal, spec: ModelSpec, request, body_size: int, scope: MeterScope) -> None:
        """Raises when the request may not start. Once admitted, the scope carries the rate-limit
        headers and settles the token reservation with the real usage where the request ends."""
        check_key(principal)
        quota = self._limits.quota(principal.rpm_limit, principal.tpm_limit)
        reservation = await self._limits.reserve(principal.key_id, quota, estimate_tokens(request, body_size, spec))
        scope.headers.update(reservation.headers)
        scope.settle = lambda used: self._limits.settle(reservation, used)
        await self._check_money(principal)

    async def label(self, error: CoderapiError, principal: Principal, scope: MeterScope) -> None:
        """Put the rate-limit headers on an error answer (a refused 429 has its own already)."""
        if not scope.headers and not isinstance(error, RateLimited):
            quota = self._limits.quota(principal.rpm_limit, principal.tpm_limit)
            scope.headers.update(await self._limits.peek(principal.key_id, quota))
        for name, value in scope.headers.items():
            error.headers.setdefault(name, value)

    async def _check_money(self, principal: Principal) -> None:
        if principal.balance is not None and principal.balance <= 0:
            raise QuotaExceeded(
                f"You have run out of credit (balance ${principal.balance:.2f}). "
                "Ask an administrator to grant more credit.",
                code="insufficient_quota",
            )
        threshold = principal.limit_threshold
        if threshold is None:
            return
        spent = await self._spend.spent(principal.key_id, principal.key_prefix, principal.limit_retention)
        if spent >= threshold:
            raise QuotaExceeded(
                f"This API key has reached its spending limit of ${threshold:.2f} "
                f"{_PERIODS.get(principal.limit_retention, '')} (spent ${spent:.6f}). "
                "Raise the limit on the key, or wait for the period to reset.",
                code="spending_limit_exceeded",
            )
