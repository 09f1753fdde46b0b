"""GET /v1/models and /v1/models/{id}: the catalogue, open to all (no key needed).

What serves an upstream model (its URLs) is shown only to an admin's key. A key is optional here;
one that is unknown or disabled just gets the public view, as no key does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from coderapi.api.deps import ServicesDep, bearer_secret
from coderapi.api.answers import Catalogue, CatalogueEntry, answer
from coderapi.api.openapi import error_responses
from coderapi.errors import AuthenticationFailed, PermissionDenied

router = APIRouter(tags=["models"])


async def caller_is_admin(request: Request, services: ServicesDep) -> bool:
    if not request.headers.get("authorization"):
        return False
    try:
        principal = await services.keys.authenticate_key(bearer_secret(request))
    except (AuthenticationFailed, PermissionDenied):
        return False
    return principal.role == "admin"


AdminCallerDep = Annotated[bool, Depends(caller_is_admin)]


@router.get(
    "/v1/models", summary="List served models, their aliases and the weights behind each id",
    responses=answer(Catalogue),
)
@router.get("/models", include_in_schema=False)
async def list_models(services: ServicesDep, admin: AdminCallerDep) -> dict:
    return {"object": "list", "data": services.registry.catalogue(admin=admin)}


@router.get(
    "/v1/models/{model_id:path}", summary="One model of the catalogue",
    responses={**answer(CatalogueEntry), **error_responses(404)},
)
async def get_model(model_id: str, services: ServicesDep, admin: AdminCallerDep) -> dict:
    return services.registry.catalogue_entry(model_id, admin=admin)
