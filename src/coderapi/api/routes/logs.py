"""GET /v2/logs: one row per request in a window, newest first (management keys, `usage:read`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from coderapi.api.deps import ServicesDep
from coderapi.api.answers import LogPage, answer
from coderapi.api.framing import iso_z, usd
from coderapi.api.openapi import MANAGEMENT_ERRORS, error_responses
from coderapi.api.platform_deps import ReadUsage
from coderapi.api.window_query import WindowQuery, window_query
from coderapi.errors import InvalidRequest
from coderapi.services.billing import credits
from coderapi.services.usage_types import OUTCOMES, LogEntry

router = APIRouter(tags=["usage"])

PARAMS = {"model", "status", "limit", "offset"}  # and the window's


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
    principal: ReadUsage, services: ServicesDep, query: Annotated[WindowQuery, Depends(window_query(PARAMS))],
    model: list[str] = Query(default=[]), status: list[str] = Query(default=[]),
    limit: int = 50, offset: int = 0,
) -> dict:
    for value in status:
        if value not in OUTCOMES:
            raise InvalidRequest(f"Invalid status {value!r}: expected succeeded or failed.", param="status")
    page = await services.reports.logs(
        principal.user_id, query.window, key_prefix=query.key_prefix, models=model, statuses=status,
        limit=limit, offset=offset,
    )
    pagination = {"limit": page.limit, "offset": page.offset, "total": page.total, "has_more": page.has_more}
    return {"data": [_row(e) for e in page.items], "pagination": pagination}
