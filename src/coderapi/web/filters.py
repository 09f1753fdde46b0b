"""Jinja filters for the dashboard: money, counts, times."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from jinja2 import Environment


def money(value: Decimal | float | int | None, places: int | None = None) -> str:
    """USD: two places from a cent up, six (the store's precision) for tiny per-request costs."""
    amount = Decimal(str(value or 0))
    if places is None:
        places = 2 if amount == 0 or abs(amount) >= Decimal("0.01") else 6
    text = f"{abs(amount):,.{places}f}"
    return ("-$" if amount < 0 else "$") + text


def number(value: int | float | None) -> str:
    return f"{value or 0:,}"


def compact(value: int | float | None) -> str:
    """1234 -> 1.2k, 2_500_000 -> 2.5M."""
    value = float(value or 0)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:g}"


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    seconds = ((now or datetime.now(timezone.utc)) - value).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def install(env: Environment) -> None:
    env.filters.update(money=money, number=number, compact=compact, when=when, ago=ago)
