"""The documented shapes of the platform API's answers (key management, usage, logs, balance) and
of the model catalogue, for the routes' `responses=`.

Documentation only: the routes build their answers as dicts, and the schemathesis fuzz
(tests/api/test_openapi_fuzz.py) checks every answer against these. Unknown extra fields are
allowed, so adding a field to an answer is not a breaking change for clients.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class KeySpendingLimit(_Open):
    retention: Literal["no_reset", "day", "week", "month"]
    threshold: float | None  # USD per period


class KeyData(_Open):
    name: str | None
    disabled: bool
    prefix: str
    scopes: list[str]
    limit: KeySpendingLimit | None  # null: no spending limit
    created_at: str
    updated_at: str | None
    monthly_usage: float | None  # USD this UTC month


class CreatedKeyData(_Open):
    name: str | None
    disabled: bool
    prefix: str
    scopes: list[str]
    limit: KeySpendingLimit | None = None  # left out when the key has no spending limit
    created_at: str
    updated_at: str | None
    monthly_usage: float | None
    key: str  # the secret, shown in this answer only


class KeyAnswer(_Open):
    data: KeyData


class KeyList(_Open):
    data: list[KeyData]


class CreatedKey(_Open):
    data: CreatedKeyData


class DeletedKeyData(_Open):
    prefix: str
    deleted: bool


class DeletedKey(_Open):
    data: DeletedKeyData


class UsageSummary(_Open):
    api_key_prefix: str | None
    start: str
    end: str
    spend: float | None  # USD
    currency: Literal["USD"]
    requests: int


class TokenCounts(_Open):
    input: int
    output: int
    total: int


class RequestCounts(_Open):
    total: int
    charged: int
    succeeded: int
    failed: int


class ModelSpend(_Open):
    model: str
    spend: float | None
    requests: int


class UsageGroupRow(_Open):
    day: str | None = None  # with group_by day
    model: str | None = None  # with group_by model
    spend: float | None
    tokens: TokenCounts
    requests: RequestCounts


class UsageDetail(UsageSummary):
    models: list[ModelSpend]
    groups: list[UsageGroupRow] | None = None  # with group_by


class LogCost(_Open):
    usd: float | None
    credits: int


class LogRow(_Open):
    created: str
    status: str
    origin: str
    model: str
    cost: LogCost
    tokens: TokenCounts
    request_id: str
    inference_id: str
    client_request_id: str | None


class Pagination(_Open):
    limit: int
    offset: int
    total: int
    has_more: bool


class LogPage(_Open):
    data: list[LogRow]
    pagination: Pagination


class Balance(_Open):
    balance: int  # credits (1 USD = 2,000,000 credits)
    lowBalance: bool
    lowBalanceThreshold: int
    lastUpdated: str | None
    autoDebitStatus: str
    status: str
    statusExplanation: str | None


class CatalogueEntry(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    aliases: list[str]
    served_by: str
    info: dict


class Catalogue(_Open):
    object: Literal["list"]
    data: list[CatalogueEntry]


def answer(model: type[BaseModel], description: str = "Success") -> dict:
    """The `responses=` entry of a 200 answer shaped as `model`."""
    return {200: {"model": model, "description": description}}
