"""/logs: the request log, filtered by period, key, model and status, a page at a time."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.errors import InvalidRequest, NotFound
from coderapi.clock import utcnow
from coderapi.web.context import DashboardDep, ViewerDep, render
from coderapi.web.report_filters import PAGE_SIZE, PERIODS, STATUSES, ReportFilters

router = APIRouter(include_in_schema=False)


@router.get("/logs")
async def logs(request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    filters = ReportFilters.from_query(request.query_params)
    keys = await dash.services.keys.list_keys(viewer.user.id)
    reports, page, error = dash.services.reports, None, None
    try:
        page = await reports.logs(
            viewer.user.id, filters.window(utcnow()), key_prefix=filters.key or None,
            models=(filters.model,) if filters.model else (), statuses=(filters.status,) if filters.status else (),
            limit=PAGE_SIZE, offset=filters.offset,
        )
    except (InvalidRequest, NotFound) as exc:
        error = exc.message
    return render(
        request, "logs.html", viewer, filters=filters, periods=PERIODS, statuses=STATUSES, keys=keys,
        models=dash.services.registry.ids(), page=page, error=error, page_size=PAGE_SIZE,
    )
