"""Shared test set-up: integration tiers fail instead of skipping when CI promised their servers."""

from __future__ import annotations

import os

import pytest


def require_or_skip(available: bool, reason: str) -> None:
    """Skips on a developer machine without the server; fails in CI, where .ci/run starts it."""
    if available:
        return
    if os.environ.get("CODERAPI_REQUIRE_INTEGRATION"):
        pytest.fail(f"integration prerequisite missing in CI: {reason}")
    pytest.skip(reason)
