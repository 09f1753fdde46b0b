"""Balance, prices and credit: what `/v1/billing/balance` and the dashboard's billing page show.

Money is kept in USD. The billing contract also counts *credits*; as in its examples
(0.25 USD = 500,000 credits), one USD is 2,000,000 credits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from coderapi.config import ModelSpec
from coderapi.clock import utcnow
from coderapi.money import to_money
from coderapi.services.user_ops import UserService

CREDITS_PER_USD = 2_000_000
LOW_BALANCE_USD = Decimal("0.50")


def credits(usd: Decimal) -> int:
    return int((usd * CREDITS_PER_USD).to_integral_value())


@dataclass(frozen=True)
class BalanceReport:
    balance: Decimal  # USD
    low_balance_threshold: Decimal  # USD
    as_of: datetime

    @property
    def low(self) -> bool:
        return self.balance < self.low_balance_threshold

    @property
    def status(self) -> str:
        return "current" if self.balance > 0 else "depleted"

    @property
    def explanation(self) -> str:
        if self.balance > 0:
            return "Balance is current and up to date"
        return "Balance is used up: inference requests are refused until an administrator grants credit"


@dataclass(frozen=True)
class ModelPrice:
    model: str
    aliases: tuple[str, ...]
    input_per_million: Decimal  # USD per million prompt tokens
    output_per_million: Decimal  # USD per million completion tokens


class Billing:
    def __init__(
        self, users: UserService, models: list[ModelSpec], settled: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._users = users
        self._models = models
        self._settled = settled  # waits for this gateway's queued debits (Metering.settled)

    async def balance(self, user_id: int) -> BalanceReport:
        if self._settled is not None:
            await self._settled()
        return BalanceReport(await self._users.balance(user_id), LOW_BALANCE_USD, utcnow())

    def prices(self) -> list[ModelPrice]:
        """Prices per million tokens of every served model (from the model registry's config)."""
        return [
            ModelPrice(m.id, tuple(m.aliases), Decimal(str(m.price_input_per_million)),
                       Decimal(str(m.price_output_per_million)))
            for m in self._models
        ]

    async def grant(self, user_id: int, amount: Decimal | float | str, *, reason: str, granted_by: str) -> Decimal:
        """Add (or, negative, take back) USD credit with a ledger row; returns the new balance.
        Amounts are rounded to the store's six places; zero or malformed: InvalidRequest."""
        return to_money(await self._users.grant_credit(user_id, amount, reason, granted_by))
