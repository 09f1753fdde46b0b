"""/billing: balance, prices per million tokens, recent charges."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.web.context import DashboardDep, ViewerDep, render

router = APIRouter(include_in_schema=False)


def price_rows(dash, admin: bool = False) -> list[dict]:
    return [
        {
            "id": model_id,
            "alias_of": served.spec.id if model_id != served.spec.id else None,
            "input": served.spec.price_input_per_million,
            "output": served.spec.price_output_per_million,
            "weights": served.shown_weights(admin),  # upstream URLs for admins only
        }
        for model_id, served in dash.services.registry.public_models()
    ]


@router.get("/billing")
async def billing(request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    services, user_id = dash.services, viewer.user.id
    return render(
        request, "billing.html", viewer,
        balance=await services.billing.balance(user_id),
        prices=price_rows(dash, viewer.is_admin),
        charges=await services.reports.recent_charges(user_id, limit=20),
        credits=await services.reports.credit_history(user_id, limit=10),
    )
