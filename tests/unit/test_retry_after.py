"""Retry-After is whole seconds within 1..3600, however odd the value it comes from (an upstream's
header: 400 nines, a superscript digit, an HTTP date; an infinite or NaN wait): never an error."""

from __future__ import annotations

import pytest

from coderapi.errors import Overloaded, RateLimited, retry_after_seconds


@pytest.mark.parametrize("value, seconds", [
    ("7.2", 8), (" 30 ", 30), ("0", 1), ("9" * 400, 3600), ("1" * 300, 3600),
    ("²", 1), ("-3", 1), ("1e5", 1), ("Wed, 21 Oct 2015 07:28:00 GMT", 1), ("", 1),
    (0.2, 1), (59.0, 59), (float("inf"), 3600), (float("nan"), 1), (10**400, 3600), (-5, 1),
])
def test_retry_after_is_whole_seconds_within_bounds(value, seconds):
    assert retry_after_seconds(value) == seconds


@pytest.mark.parametrize("wait, header", [(float("inf"), "3600"), (10**400, "3600"), (float("nan"), "1"), (1.5, "2")])
def test_an_error_with_any_wait_renders_a_bounded_header(wait, header):
    assert Overloaded("busy", retry_after=wait).headers["retry-after"] == header
    assert RateLimited("slow down", retry_after=wait).headers["retry-after"] == header
