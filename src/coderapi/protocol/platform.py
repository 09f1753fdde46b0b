"""Wire models of the platform API's request bodies (key management), strict as the contract is:
unknown fields, wrong types, values outside an enum, and thresholds that are negative, too large
or finer than the money column's six decimals are 400, naming the field by its dotted path
(`limit.threshold`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from coderapi.errors import InvalidRequest
from coderapi.money import MAX_AMOUNT
from coderapi.protocol.validation import invalid_request_from

Retention = Literal["no_reset", "day", "week", "month"]
ModelScope = Literal[
    "model:chat", "model:responses", "model:image", "model:audio",
    "model:video", "model:embeddings", "model:speech", "model:ocr",
]
MAX_THRESHOLD = int(MAX_AMOUNT)  # USD; far above any real limit, exact in the money column
MONEY_PLACES = 6  # decimals the money column keeps (Numeric(18, 6))

BodyT = TypeVar("BodyT", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class KeyLimit(_Strict):
    retention: Retention = "no_reset"
    threshold: float | None = Field(None, ge=0, le=MAX_THRESHOLD, allow_inf_nan=False)  # USD per period

    @field_validator("threshold")
    @classmethod
    def _storable(cls, value: float | None) -> float | None:
        """The store keeps USD with six decimals: a finer limit would be kept as another one."""
        if value is not None and Decimal(repr(value)).as_tuple().exponent < -MONEY_PLACES:
            raise ValueError(
                f"the spending limit {value!r} has more than {MONEY_PLACES} decimal places, "
                "which cannot be stored exactly"
            )
        return value


class KeyCreate(_Strict):
    """POST /v1/keys. Creates an inference key (management keys are made in the dashboard)."""

    name: str | None = Field(None, max_length=128)
    limit: KeyLimit | None = None
    scopes: list[ModelScope] | None = None


class KeyUpdate(_Strict):
    """PATCH (fields sent are changed) and PUT (the whole set: fields left out take their defaults)."""

    name: str | None = Field(None, max_length=128)
    disabled: bool = None  # type: ignore[assignment]  # optional, but never null
    limit: KeyLimit | None = None
    scopes: list[ModelScope] | None = None


def parse_platform_body(model: type[BodyT], body: bytes, *, empty_ok: bool = False) -> BodyT:
    if not body.strip() and empty_ok:
        body = b"{}"
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        error = invalid_request_from(exc.errors())
        first = exc.errors()[0] if exc.errors() else {}
        path = [str(p) for p in first.get("loc", ()) if isinstance(p, str)]
        if error.param is not None and path:
            error.param = ".".join(path)
        raise error from None


def check_query(params, allowed: set[str], *, refused: dict[str, str] | None = None) -> None:
    """400 for a query parameter the endpoint does not take (`refused` gives some a reason)."""
    for name in params:
        if name in (refused or {}):
            raise InvalidRequest(refused[name], param=name)
        if name not in allowed:
            raise InvalidRequest(f"Unknown query parameter {name!r}.", param=name)
