"""/: the landing page for visitors, the overview for signed-in users."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.services.usage_window import Window
from coderapi.clock import utcnow
from coderapi.web.charts import bar_chart
from coderapi.web.context import DashboardDep, MaybeViewer, render
from coderapi.web.snippets import example_model, examples

router = APIRouter(include_in_schema=False)


def _served(dash, admin: bool = False) -> list[dict]:
    return [
        {"id": m.spec.id, "aliases": m.spec.aliases, "weights": m.shown_weights(admin)}
        for m in dash.services.registry.models
    ]


@router.get("/")
async def home(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    base = str(request.base_url).rstrip("/")
    model = example_model(dash.services.registry.ids())
    snippet = examples(base, model)[0]
    if viewer is None:
        return render(request, "landing.html", None, served=_served(dash), snippet=snippet)
    keys = await dash.services.keys.list_keys(viewer.user.id)
    week = await dash.services.reports.series(viewer.user.id, Window.last(timedelta(days=7), utcnow()))
    overview = {
        "balance": await dash.services.users.balance(viewer.user.id),
        "keys_total": len(keys),
        "keys_active": sum(1 for k in keys if not k.disabled),
        "month_spend": sum((k.monthly_usage for k in keys), Decimal(0)),
        "week_requests": sum(g.totals.requests for g in week),
        "chart": bar_chart([g.day.strftime("%a %d") for g in week], [("Requests", [g.totals.requests for g in week])],
                           label="Requests per day, last 7 days", width=920),
    }
    return render(
        request, "overview.html", viewer, overview=overview, served=_served(dash, viewer.is_admin), snippet=snippet,
        recent_keys=list(reversed(keys))[:5],
    )
