"""The wall clock in UTC: one definition shared by every layer (api, web, services, store)."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
