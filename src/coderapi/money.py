"""USD amounts as the store keeps them: Decimal with six places. Shared below every layer (as
`clock` is), so services round money without importing the store's tables."""

from __future__ import annotations

from decimal import Decimal

_MICRO = Decimal("0.000001")
MAX_MONEY = Decimal("999999999999.999999")  # the most the money column, Numeric(18, 6), keeps


def to_money(value: Decimal | float | int | str | None) -> Decimal:
    """A USD amount as a Decimal rounded to the column's six places (floats via their repr)."""
    if value is None:
        return Decimal(0).quantize(_MICRO)
    return Decimal(value if isinstance(value, (Decimal, int)) else str(value)).quantize(_MICRO)
