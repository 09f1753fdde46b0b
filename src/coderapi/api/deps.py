"""Annotated dependencies: the app's services and the caller's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from coderapi.errors import AuthenticationFailed
from coderapi.services.accounts import Principal
from coderapi.services.container import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def request_id(request: Request) -> str:
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
    return await services.accounts.authenticate_key(bearer_secret(request))


PrincipalDep = Annotated[Principal, Depends(key_principal)]
