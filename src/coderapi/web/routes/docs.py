"""/docs: the API reference generated from the app's own OpenAPI document, and the documented
example adapted to this server. (FastAPI's Swagger UI needs a CDN, so create_app turns it off.)"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.web.context import MaybeViewer, render
from coderapi.web.snippets import example_model, examples

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")


def _resolve(schema: dict, components: dict) -> dict:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return components.get(ref.rsplit("/", 1)[-1], schema)
    return schema


def _operation(path: str, method: str, op: dict, components: dict) -> dict:
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    params = [
        {
            "name": p.get("name"), "in": p.get("in"), "required": p.get("required", False),
            "type": _resolve(p.get("schema", {}), components).get("type", ""),
            "description": p.get("description", ""),
        }
        for p in op.get("parameters", [])
    ]
    return {
        "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
        "method": method.upper(), "path": path, "summary": op.get("summary", ""),
        "description": op.get("description", ""), "params": params,
        "body": json.dumps(_resolve(body, components), indent=2)[:20000] if body else None,
        "responses": [(code, r.get("description", "")) for code, r in op.get("responses", {}).items()],
    }


def reference(openapi: dict) -> list[dict]:
    """[{tag, operations}] in the document's order, each operation ready for the template."""
    components = openapi.get("components", {}).get("schemas", {})
    sections: dict[str, list[dict]] = {}
    for path, item in openapi.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or ["other"])[0]
                sections.setdefault(tag, []).append(_operation(path, method, op, components))
    return [{"tag": tag, "operations": ops} for tag, ops in sections.items()]


@router.get("/docs")
async def docs(request: Request, viewer: MaybeViewer) -> Response:
    app = request.app
    dash = app.state.dashboard
    base = str(request.base_url).rstrip("/")
    model = example_model(dash.services.registry.ids())
    return render(
        request, "docs.html", viewer, sections=reference(app.openapi()),
        examples=examples(base, model), model=model, models=dash.services.registry.ids(),
        title=app.title, version=app.version,
    )
