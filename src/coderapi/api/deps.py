"""Annotated dependencies: the app's services and the caller's key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from coderapi.errors import AuthenticationFailed, PermissionDenied
from coderapi.services.accounts import Principal
from coderapi.services.container import Services


# Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per
# request for what is one attribute read.
async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def request_id(request: Request) -> str:
    return request.scope["state"]["request_id"]


RequestIdDep = Annotated[str, Depends(request_id)]


def bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'. "
            "Create keys in the dashboard (/keys) or with `coderapi keys create`.",
            code="missing_api_key",
        )
    return secret.strip()


async def key_principal(request: Request, services: ServicesDep) -> Principal:
    return await services.keys.authenticate_key(bearer_secret(request))


PrincipalDep = Annotated[Principal, Depends(key_principal)]


async def inference_key_principal(request: Request, services: ServicesDep) -> Principal:
    """The key of an inference request, from the key cache once seen: the request's cost
    reservation checks it against its row (see services/key_cache.py)."""
    return await services.keys.authenticate_inference_key(bearer_secret(request))


InferencePrincipalDep = Annotated[Principal, Depends(inference_key_principal)]


async def metrics_reader(request: Request, services: ServicesDep) -> None:
    """Who may read /metrics: anyone with `metrics_public`; else the bearer `metrics_token`, or
    an admin's management key. Model names, traffic and latencies are not for every key holder."""
    settings = services.settings
    if settings.metrics_public:
        return
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationFailed(
            "/metrics needs 'Authorization: Bearer <token>': the `metrics_token` setting, or an "
            "admin's management key (or set `metrics_public` to serve it to anyone).",
            code="missing_api_key",
        )
    token = settings.metrics_token
    if token is not None and hmac.compare_digest(secret.encode(), token.get_secret_value().encode()):
        return
    principal = await services.keys.authenticate_key(secret)  # 401 for anything else
    if not (principal.is_admin and principal.is_management):
        raise PermissionDenied(
            "/metrics is readable with the `metrics_token` or an admin's management key only.",
            code="metrics_forbidden",
        )


MetricsReaderDep = Depends(metrics_reader)
