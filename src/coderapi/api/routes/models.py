"""GET /v1/models and /v1/models/{id}: the catalogue, open to all (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter

from coderapi.api.deps import ServicesDep

router = APIRouter(tags=["models"])


@router.get("/v1/models", summary="List served models, their aliases and the weights behind each id")
@router.get("/models", include_in_schema=False)
async def list_models(services: ServicesDep) -> dict:
    return {"object": "list", "data": services.registry.catalogue()}


@router.get("/v1/models/{model_id:path}", summary="One model of the catalogue")
async def get_model(model_id: str, services: ServicesDep) -> dict:
    return services.registry.catalogue_entry(model_id)
