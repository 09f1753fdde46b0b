"""What the usage reports hand out: plain dataclasses (money in USD as Decimal, times in UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from coderapi.services.usage_window import Window

# Outcomes as the logs contract names them -> the statuses stored on usage rows.
OUTCOMES = {"succeeded": ("success", "cancelled"), "failed": ("error", "refused")}
STORED_STATUSES = ("success", "error", "refused", "cancelled")


def outcome_of(status: str) -> str:
    """`succeeded` (charged: finished, or the client hung up) or `failed` (error or refused: free)."""
    return "succeeded" if status in OUTCOMES["succeeded"] else "failed"


@dataclass(frozen=True)
class UsageTotals:
    requests: int  # every inference request in the window
    succeeded: int  # charged: finished, or the client hung up after tokens were generated
    input_tokens: int
    output_tokens: int
    spend: Decimal  # USD, the sum of the rows' costs

    @property
    def failed(self) -> int:  # errors and refusals, which cost nothing
        return self.requests - self.succeeded

    @property
    def charged(self) -> int:
        return self.succeeded

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UsageGroup:
    """One group of a series: the dimensions it was grouped by are set, the others None."""

    totals: UsageTotals
    day: date | None = None
    model: str | None = None
    key_prefix: str | None = None


@dataclass(frozen=True)
class UsageDetail:
    window: Window
    key_prefix: str | None  # None: every key of the user
    totals: UsageTotals
    models: list[UsageGroup]  # per model, highest spend first
    groups: list[UsageGroup] | None  # only when grouping was asked for


@dataclass(frozen=True)
class LogEntry:
    id: int
    created_at: datetime
    request_id: str
    client_request_id: str | None
    key_prefix: str | None
    model: str
    endpoint: str
    status: str  # stored status: success, error, refused, cancelled
    status_code: int | None
    error_code: str | None
    finish_reason: str | None
    origin: str  # api | playground
    input_tokens: int
    output_tokens: int
    cost: Decimal
    latency_ms: int | None
    ttft_ms: int | None

    @property
    def outcome(self) -> str:
        return outcome_of(self.status)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class LogPage:
    items: list[LogEntry]
    total: int  # rows matching across all pages
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


@dataclass(frozen=True)
class Charge:
    created_at: datetime
    request_id: str
    key_prefix: str | None
    model: str
    input_tokens: int
    output_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class CreditEntry:
    created_at: datetime
    amount: Decimal  # USD; negative when credit was taken back
    reason: str
    granted_by: str
