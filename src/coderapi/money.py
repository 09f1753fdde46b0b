"""USD amounts as the store keeps them: Decimal with six places. Shared below every layer (as
`clock` is), so services round money without importing the store's tables."""

from __future__ import annotations

from decimal import Decimal

_MICRO = Decimal("0.000001")
# The most any amount, limit or balance may be. Below 1e9 an amount with six decimals has at most
# 15 significant digits, which a double holds exactly; SQLite keeps Numeric(18, 6) as a double, so
# past it a grant or a balance would be rounded silently (1e11 + 0.000001 was stored as 1e11).
MAX_AMOUNT = Decimal(1_000_000_000)


def to_money(value: Decimal | float | int | str | None) -> Decimal:
    """A USD amount as a Decimal rounded to the column's six places (floats via their repr)."""
    if value is None:
        return Decimal(0).quantize(_MICRO)
    return Decimal(value if isinstance(value, (Decimal, int)) else str(value)).quantize(_MICRO)
