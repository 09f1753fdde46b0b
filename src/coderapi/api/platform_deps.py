"""Who may call the platform API: management keys, each endpoint needing one scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from coderapi.api.deps import PrincipalDep
from coderapi.errors import PermissionDenied
from coderapi.services.accounts import Principal


def require_management(principal: Principal, scope: str) -> Principal:
    if not principal.is_management:
        raise PermissionDenied(
            "This endpoint needs a management key; inference keys can only call the model endpoints "
            "(and GET /v1/key).",
            code="management_key_required",
        )
    if not principal.has_scope(scope):
        raise PermissionDenied(f"This management key lacks the `{scope}` scope.", code="missing_scope")
    return principal


def _management(scope: str):
    async def dependency(principal: PrincipalDep) -> Principal:
        return require_management(principal, scope)

    return Depends(dependency)


ManageKeys = Annotated[Principal, _management("keys:manage")]
ReadUsage = Annotated[Principal, _management("usage:read")]
ReadBilling = Annotated[Principal, _management("billing:read")]
