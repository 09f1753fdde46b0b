"""Small pieces of the platform API's answers: times and money as the contract writes them."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal


def iso_z(moment: datetime | None) -> str | None:
    """UTC with milliseconds and a Z: 2026-02-18T06:59:10.031Z."""
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def usd(amount: Decimal | None) -> float | None:
    return None if amount is None else float(amount)
