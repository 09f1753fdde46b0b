"""GET /v2/usage and /v2/usage/detail: spend over a window (management keys, `usage:read`).

Without `key_prefix` a management key gets its whole account (every key; management keys make
no inference calls of their own), and `api_key_prefix` is null."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from coderapi.api.deps import ServicesDep
from coderapi.api.answers import UsageDetail, UsageSummary, answer
from coderapi.api.framing import iso_z, usd
from coderapi.api.openapi import MANAGEMENT_ERRORS, error_responses
from coderapi.api.platform_deps import ReadUsage
from coderapi.api.window_query import WindowQuery, window_query
from coderapi.errors import InvalidRequest
from coderapi.services.usage_types import UsageGroup, UsageTotals
from coderapi.services.usage_window import Window

router = APIRouter(tags=["usage"])

GROUPINGS = {"day": ("day",), "model": ("model",), "day,model": ("day", "model")}
_NO_GROUPS = {"group_by": "group_by is accepted on /v2/usage/detail only; /v2/usage answers a flat total."}


def _head(prefix: str | None, window: Window, totals: UsageTotals) -> dict:
    return {
        "api_key_prefix": prefix,
        "start": iso_z(window.start),
        "end": iso_z(window.end),
        "spend": usd(totals.spend),
        "currency": "USD",
        "requests": totals.charged,
    }


def _group(group: UsageGroup) -> dict:
    t = group.totals
    out: dict = {}
    if group.day is not None:
        out["day"] = group.day.isoformat()
    if group.model is not None:
        out["model"] = group.model
    out["spend"] = usd(t.spend)
    out["tokens"] = {"input": t.input_tokens, "output": t.output_tokens, "total": t.total_tokens}
    out["requests"] = {"total": t.requests, "charged": t.charged, "succeeded": t.succeeded, "failed": t.failed}
    return out


@router.get(
    "/v2/usage", summary="Total spend over a window, for one key or the whole account",
    responses={**answer(UsageSummary), **error_responses(400, *MANAGEMENT_ERRORS, 404)},  # 404: unknown key_prefix
)
async def usage(
    principal: ReadUsage, services: ServicesDep,
    query: Annotated[WindowQuery, Depends(window_query(refused=_NO_GROUPS))],
) -> dict:
    totals = await services.reports.totals(principal.user_id, query.window, key_prefix=query.key_prefix)
    return _head(query.key_prefix, query.window, totals)


@router.get(
    "/v2/usage/detail", summary="Spend over a window with a per-model breakdown and optional groups",
    responses={**answer(UsageDetail), **error_responses(400, *MANAGEMENT_ERRORS, 404)},  # 404: unknown key_prefix
)
async def usage_detail(
    principal: ReadUsage, services: ServicesDep,
    query: Annotated[WindowQuery, Depends(window_query({"group_by", "tz"}))],
    group_by: str | None = None, tz: str = "UTC",
) -> dict:
    if group_by is not None and group_by not in GROUPINGS:
        raise InvalidRequest("group_by must be one of day, model, day,model.", param="group_by")
    detail = await services.reports.detail(
        principal.user_id, query.window, key_prefix=query.key_prefix, group_by=GROUPINGS.get(group_by or "", ()), tz=tz
    )
    answer = _head(query.key_prefix, query.window, detail.totals)
    answer["models"] = [  # models with charged requests; failed ones are in `groups` (total, failed)
        {"model": g.model, "spend": usd(g.totals.spend), "requests": g.totals.charged}
        for g in detail.models if g.totals.charged
    ]
    if detail.groups is not None:
        answer["groups"] = [_group(g) for g in detail.groups]
    return answer
