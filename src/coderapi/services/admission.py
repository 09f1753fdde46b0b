"""Who may start an inference request: key kind and scopes (limits and money join here)."""

from __future__ import annotations

from coderapi.config import ModelSpec
from coderapi.errors import PermissionDenied
from coderapi.services.accounts import Principal

CHAT_SCOPE = "model:chat"


class Admission:
    async def admit(self, principal: Principal, spec: ModelSpec) -> dict[str, str]:
        """Raises when the request may not start; returns headers to put on the answer."""
        if principal.key_kind != "inference":
            raise PermissionDenied(
                "Management keys cannot call inference endpoints; use an inference key.",
                code="wrong_key_kind",
            )
        if CHAT_SCOPE not in principal.scopes:
            raise PermissionDenied(f"This key lacks the `{CHAT_SCOPE}` scope.", code="missing_scope")
        return {}
