"""GET /v1/billing/balance (management keys, `billing:read`). Amounts in credits, as the
contract counts them (1 USD = 2,000,000 credits)."""

from __future__ import annotations

from fastapi import APIRouter

from coderapi.api.deps import ServicesDep
from coderapi.api.answers import Balance, answer
from coderapi.api.framing import iso_z
from coderapi.api.openapi import MANAGEMENT_ERRORS, error_responses
from coderapi.api.platform_deps import ReadBilling
from coderapi.services.billing import credits

router = APIRouter(tags=["billing"])


@router.get(
    "/v1/billing/balance", summary="Your account's balance in credits",
    responses={**answer(Balance), **error_responses(*MANAGEMENT_ERRORS)},
)
async def balance(principal: ReadBilling, services: ServicesDep) -> dict:
    report = await services.billing.balance(principal.user_id)
    return {
        "balance": credits(report.balance),
        "lowBalance": report.low,
        "lowBalanceThreshold": credits(report.low_balance_threshold),
        "lastUpdated": iso_z(report.as_of),
        "autoDebitStatus": "disabled",
        "status": report.status,
        "statusExplanation": report.explanation,
    }
