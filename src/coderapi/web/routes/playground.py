"""/playground: chat with a served model from the browser, with one of the user's keys.

The page never receives a secret from the server (none is kept). The browser calls
/v1/chat/completions itself with a key the user pastes, or one created earlier in this tab
(kept in the tab's sessionStorage by the keys page, on request)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.web.context import DashboardDep, ViewerDep, render

router = APIRouter(include_in_schema=False)


def model_options(dash) -> list[dict]:
    """Every public id (aliases included) with its sampling defaults and limits."""
    return [
        {
            "id": model_id,
            "served_by": served.spec.id,
            "context_length": served.spec.context_length,
            "defaults": served.spec.generation.model_dump(),
        }
        for model_id, served in dash.services.registry.public_models()
    ]


@router.get("/playground")
async def playground(request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    keys = await dash.services.keys.list_keys(viewer.user.id)
    usable = [
        {"prefix": k.prefix, "name": k.name or ""}
        for k in keys if k.kind == "inference" and not k.disabled
    ]
    models = model_options(dash)
    return render(
        request, "playground.html", viewer, models=models, usable_keys=usable,
        config={"models": models, "keys": usable},
    )
