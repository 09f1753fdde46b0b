"""Key management: /v1/keys, /v1/keys/{prefix} (management keys, `keys:manage`) and /v1/key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from coderapi.api.deps import PrincipalDep, ServicesDep
from coderapi.api.answers import CreatedKey, DeletedKey, KeyAnswer, KeyList, answer
from coderapi.api.framing import iso_z, usd
from coderapi.api.openapi import AUTH_ERRORS, BODY_ERRORS, MANAGEMENT_ERRORS, error_responses, openapi_body
from coderapi.api.platform_deps import ManageKeys
from coderapi.protocol.platform import KeyCreate, KeyLimit, KeyUpdate, parse_platform_body
from coderapi.services.accounts import KeyInfo

router = APIRouter(tags=["keys"])


def key_data(info: KeyInfo, *, limit_nullable: bool = True) -> dict:
    data = {
        "name": info.name,
        "disabled": info.disabled,
        "prefix": info.prefix,
        "scopes": list(info.scopes),
        "limit": None,
        "created_at": iso_z(info.created_at),
        "updated_at": iso_z(info.updated_at),
        "monthly_usage": usd(info.monthly_usage),
    }
    if info.limit_threshold is not None:
        data["limit"] = {"retention": info.limit_retention, "threshold": usd(info.limit_threshold)}
    elif not limit_nullable:
        del data["limit"]
    return data


def _patch_fields(body: KeyUpdate) -> dict:
    given = body.model_fields_set
    fields = {name: getattr(body, name) for name in ("name", "disabled", "scopes") if name in given}
    limit = body.limit
    if "limit" in given and limit is None:
        fields["limit_threshold"] = None  # limit: null removes the spending limit
    elif limit is not None:
        if "threshold" in limit.model_fields_set:
            fields["limit_threshold"] = limit.threshold
        if "retention" in limit.model_fields_set:
            fields["limit_retention"] = limit.retention
    return fields


def _put_fields(body: KeyUpdate) -> dict:
    limit = body.limit or KeyLimit()
    fields = {
        "name": body.name,
        "disabled": bool(body.disabled),
        "limit_threshold": limit.threshold,
        "limit_retention": limit.retention,
    }
    # Scopes left out stay as they are: their default (the kind's) could only widen a narrowed key.
    if "scopes" in body.model_fields_set:
        fields["scopes"] = body.scopes
    return fields


@router.post(
    "/v1/keys", summary="Create an inference API key; its secret is in this answer only",
    openapi_extra=openapi_body(KeyCreate, required=False), responses={**answer(CreatedKey), **error_responses(*BODY_ERRORS)},
)
async def create_key(request: Request, principal: ManageKeys, services: ServicesDep) -> JSONResponse:
    body = parse_platform_body(KeyCreate, await request.body(), empty_ok=True)
    limit = body.limit or KeyLimit()
    info, secret = await services.keys.create_key(
        principal.user_id, name=body.name, kind="inference", scopes=body.scopes,
        limit_threshold=limit.threshold, limit_retention=limit.retention,
    )
    data = {**key_data(info, limit_nullable=False), "key": secret}
    return JSONResponse({"data": data}, headers={"cache-control": "no-store"})


@router.get(
    "/v1/keys", summary="List your API keys, oldest first",
    responses={**answer(KeyList), **error_responses(*MANAGEMENT_ERRORS)},
)
async def list_keys(principal: ManageKeys, services: ServicesDep) -> dict:
    return {"data": [key_data(k) for k in await services.keys.list_keys(principal.user_id)]}


@router.get(
    "/v1/key", summary="The key you are calling with", responses={**answer(KeyAnswer), **error_responses(*AUTH_ERRORS)}
)
async def this_key(principal: PrincipalDep, services: ServicesDep) -> dict:
    return {"data": key_data(await services.keys.get_key(principal.user_id, principal.key_prefix))}


@router.patch(
    "/v1/keys/{prefix}", summary="Change some of a key's properties", openapi_extra=openapi_body(KeyUpdate),
    responses={**answer(KeyAnswer), **error_responses(*BODY_ERRORS, 404)},
)
async def patch_key(prefix: str, request: Request, principal: ManageKeys, services: ServicesDep) -> dict:
    return await _update(prefix, request, principal, services, _patch_fields)


@router.put(
    "/v1/keys/{prefix}", summary="Replace a key's properties (fields left out take their defaults)",
    openapi_extra=openapi_body(KeyUpdate), responses={**answer(KeyAnswer), **error_responses(*BODY_ERRORS, 404)},
)
async def put_key(prefix: str, request: Request, principal: ManageKeys, services: ServicesDep) -> dict:
    return await _update(prefix, request, principal, services, _put_fields)


async def _update(prefix: str, request: Request, principal, services, fields_of) -> dict:
    """PATCH and PUT: the same body, read into the fields to change by `fields_of`."""
    body = parse_platform_body(KeyUpdate, await request.body())
    info = await services.keys.update_key(principal.user_id, prefix, **fields_of(body))
    return {"data": key_data(info)}


@router.delete(
    "/v1/keys/{prefix}", summary="Delete a key; it stops working at once",
    responses={**answer(DeletedKey), **error_responses(*MANAGEMENT_ERRORS, 404)},
)
async def delete_key(prefix: str, principal: ManageKeys, services: ServicesDep) -> dict:
    await services.keys.delete_key(principal.user_id, prefix)
    return {"data": {"prefix": prefix, "deleted": True}}
