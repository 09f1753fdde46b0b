"""GET /health (503 until every model is loaded) and GET /metrics (Prometheus, behind a token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coderapi.api.deps import MetricsReaderDep, ServicesDep
from coderapi.api.openapi import error_responses

router = APIRouter(tags=["operations"])

_HEALTH = {
    "type": "object", "required": ["status", "models"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "loading"]},
        "models": {"type": "object", "additionalProperties": {"type": "boolean"}},
    },
}
_HEALTH_RESPONSES = {
    200: {"description": "Every model is loaded", "content": {"application/json": {"schema": _HEALTH}}},
    503: {"description": "Models still loading (Retry-After)", "content": {"application/json": {"schema": _HEALTH}}},
}


@router.get("/health", summary="200 once every model is loaded, else 503", responses=_HEALTH_RESPONSES)
async def health(services: ServicesDep) -> JSONResponse:
    models = {m.spec.id: m.backend.ready for m in services.registry.models}
    ready = all(models.values())
    body = {"status": "ok" if ready else "loading", "models": models}
    return JSONResponse(body, status_code=200 if ready else 503, headers={} if ready else {"retry-after": "5"})


@router.get(
    "/metrics", summary="Prometheus metrics (the metrics token or an admin's management key)",
    response_class=Response, dependencies=[MetricsReaderDep], responses=error_responses(401, 403),
)
async def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
