"""GET /v2/logs: one row per request in a window, newest first (management keys, `usage:read`)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from coderapi.api.deps import ServicesDep
from coderapi.api.answers import LogPage, answer
from coderapi.api.framing import iso_z, usd
from coderapi.api.openapi import MANAGEMENT_ERRORS, error_responses
from coderapi.api.platform_deps import ReadUsage
from coderapi.errors import InvalidRequest
from coderapi.protocol.platform import check_query
from coderapi.services.billing import credits
from coderapi.services.usage_types import OUTCOMES, LogEntry
from coderapi.services.usage_window import Window
from coderapi.clock import utcnow

router = APIRouter(tags=["usage"])

PARAMS = {"period", "start", "end", "key_prefix", "model", "status", "limit", "offset"}


def _row(entry: LogEntry) -> dict:
    return {
        "created": iso_z(entry.created_at),
        "status": entry.outcome,
        "origin": entry.origin,
        "model": entry.model,
        "cost": {"usd": usd(entry.cost), "credits": credits(entry.cost)},
        "tokens": {"input": entry.input_tokens, "output": entry.output_tokens, "total": entry.total_tokens},
        "request_id": entry.request_id,
        "inference_id": entry.request_id,  # one HTTP call is one inference here
        "client_request_id": entry.client_request_id,
    }


@router.get(
    "/v2/logs", summary="The request log: filters by key, model, status and window; paginated",
    responses={**answer(LogPage), **error_responses(400, *MANAGEMENT_ERRORS, 404)},  # 404: unknown key_prefix
)
async def logs(
    request: Request, principal: ReadUsage, services: ServicesDep, period: str | None = None,
    start: str | None = None, end: str | None = None, key_prefix: str | None = None,
    model: list[str] = Query(default=[]), status: list[str] = Query(default=[]),
    limit: int = 50, offset: int = 0,
) -> dict:
    check_query(request.query_params, PARAMS)
    for value in status:
        if value not in OUTCOMES:
            raise InvalidRequest(f"Invalid status {value!r}: expected succeeded or failed.", param="status")
    window = Window.parse(period, start, end, utcnow())
    page = await services.reports.logs(
        principal.user_id, window, key_prefix=key_prefix, models=model, statuses=status, limit=limit, offset=offset
    )
    pagination = {"limit": page.limit, "offset": page.offset, "total": page.total, "has_more": page.has_more}
    return {"data": [_row(e) for e in page.items], "pagination": pagination}
