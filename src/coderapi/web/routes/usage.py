"""/usage: requests, tokens and spend per day, per key and per model, over a chosen period."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.errors import InvalidRequest, NotFound
from coderapi.services.usage_window import Window
from coderapi.clock import utcnow
from coderapi.web.charts import bar_chart, share
from coderapi.web.context import DashboardDep, ViewerDep, render
from coderapi.web.filters import money
from coderapi.web.report_filters import PERIODS, ReportFilters

router = APIRouter(include_in_schema=False)
HALF, FULL = 440, 920  # chart widths in SVG units, about their size on a laptop screen


def day_charts(days) -> dict:
    """The three per-day charts of a `series(by=("day",))` answer."""
    labels = [g.day.strftime("%b %d") for g in days]
    t = [g.totals for g in days]
    return {
        "requests": bar_chart(labels, [("Succeeded", [x.succeeded for x in t]), ("Failed", [x.failed for x in t])],
                              label="Requests per day", width=HALF),
        "tokens": bar_chart(labels, [("Input", [x.input_tokens for x in t]), ("Output", [x.output_tokens for x in t])],
                            label="Tokens per day", width=HALF),
        "spend": bar_chart(labels, [("Spend", [float(x.spend) for x in t])], fmt=lambda v: money(v, 2 if v >= 1 else 4),
                           label="Spend per day (USD)", width=FULL),
    }


def ranked(groups, attr: str) -> list[dict]:
    """Rows for the per-key / per-model tables, with a bar width relative to the biggest spender."""
    biggest = max((float(g.totals.spend) for g in groups), default=0.0)
    most = max((g.totals.requests for g in groups), default=0)
    return [
        {"name": getattr(g, attr) or "—", "totals": g.totals,
         "width": share(float(g.totals.spend), biggest) if biggest else share(g.totals.requests, most)}
        for g in groups
    ]


async def _report(dash, user_id: int, window: Window, filters: ReportFilters) -> dict:
    reports = dash.services.reports
    scope = dict(key_prefix=filters.key or None, models=(filters.model,) if filters.model else ())
    days = await reports.series(user_id, window, by=("day",), **scope)
    return {
        "totals": await reports.totals(user_id, window, **scope),
        "charts": day_charts(days),
        "by_key": ranked(await reports.series(user_id, window, by=("key",), **scope), "key_prefix"),
        "by_model": ranked(await reports.series(user_id, window, by=("model",), **scope), "model"),
    }


@router.get("/usage")
async def usage(request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    filters = ReportFilters.from_query(request.query_params)
    keys = await dash.services.keys.list_keys(viewer.user.id)
    error, now = None, utcnow()
    try:
        report = await _report(dash, viewer.user.id, filters.window(now), filters)
    except (InvalidRequest, NotFound) as exc:
        error, filters = exc.message, ReportFilters()
        report = await _report(dash, viewer.user.id, Window.last(timedelta(days=7), now), filters)
    return render(
        request, "usage.html", viewer, filters=filters, periods=PERIODS, keys=keys,
        models=dash.services.registry.ids(), error=error, **report,
    )
