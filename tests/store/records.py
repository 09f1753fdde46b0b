"""Usage records for the ledger tests: one request's usage at a given cost."""

from __future__ import annotations

from decimal import Decimal

from coderapi.services.accounts import UsageRecord


def usage_record(principal, request_id: str, cost: str) -> UsageRecord:
    return UsageRecord(request_id, principal.user_id, principal.key_id, principal.key_prefix, "m",
                       "chat.completions", cost=Decimal(cost))
