"""Whole numbers typed into a query string or a form (a page number, a rate limit)."""

from __future__ import annotations

MAX_DIGITS = 18  # every 18-digit number fits a 64-bit integer, far below Python's int() digit limit


def whole_number(text: str) -> int | None:
    """The number `text` spells in ASCII digits 0-9 (at most MAX_DIGITS of them); None otherwise.
    Not str.isdigit(): it also accepts '²' and other digits that int() refuses."""
    if not (text.isascii() and text.isdecimal()) or len(text) > MAX_DIGITS:
        return None
    return int(text)
