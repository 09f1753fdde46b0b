"""The published OpenAPI document.

- `openapi_body`: the documented request body of routes that parse their raw body themselves
  (after authentication, so an unauthenticated caller never makes the server parse a body).
- `error_responses`: the OpenAI-shaped error bodies a route can answer, for its `responses=`.
- `install_openapi`: `app.openapi()` that moves the pydantic `$defs` of those bodies under
  `components/schemas`, so every `$ref` of the document resolves (validators, fuzzers and
  client generators follow them from the document's root).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

COMPONENTS = "#/components/schemas/"
PYDANTIC_DEFS = "#/$defs/"  # pydantic's default ref_template, kept resolvable for any caller that used it


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every error the API answers: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: the `param` field names the offending parameter",
    401: "Missing or invalid API key",
    403: "The key may not do this (kind, scope, disabled) or the credit or spending limit is spent",
    404: "Unknown model, key or route",
    409: "Conflict with the current state",
    413: "The request body is larger than the route allows",
    422: "The request is well-formed but cannot be processed",
    429: "Rate limited: retry after the Retry-After header's seconds",
    502: "The upstream server failed",
    503: "Overloaded, the model still loading or the database busy: retry after the Retry-After header's seconds",
}

# What every route that takes a key can answer: unknown key, disabled key (or key of the wrong kind
# or scope), database busy. Routes add their own: 400, 404, 413 (a body), 429 (rate-limited routes).
AUTH_ERRORS = (401, 403, 503)
MANAGEMENT_ERRORS = AUTH_ERRORS
BODY_ERRORS = (400, *AUTH_ERRORS, 413)
INFERENCE_ERRORS = (*BODY_ERRORS, 404, 429, 502)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error statuses `codes`, all with the error body's schema."""
    return {code: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]} for code in codes}


def _schema_of(model: type[BaseModel], *, mode: str = "validation") -> dict[str, Any]:
    """`model`'s JSON schema as a ref into components, its `$defs` beside it (install_openapi moves them)."""
    schema = model.model_json_schema(ref_template=COMPONENTS + "{model}", mode=mode)
    defs = schema.pop("$defs", {})
    defs[model.__name__] = schema
    return {"$ref": COMPONENTS + model.__name__, "$defs": defs}


def streaming_responses(chunk: type[BaseModel], *codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route that answers JSON, or with `stream: true` server-sent events:
    `data: {chunk}` events (an error body ends a stream that fails), then `data: [DONE]`.
    The schema describes one event, as schemathesis and OpenAPI 3.2's `itemSchema` read it."""
    payload = {"anyOf": [_schema_of(chunk, mode="serialization"), {"$ref": COMPONENTS + ErrorBody.__name__}]}
    data = {"anyOf": [
        {"type": "string", "contentMediaType": "application/json", "contentSchema": payload},
        {"const": "[DONE]"},
    ]}
    event = {"type": "object", "required": ["data"], "properties": {"data": data}}
    answer = {"description": "The answer: JSON, or server-sent events", "content": {"text/event-stream": {"schema": event}}}
    return {200: answer, **error_responses(*codes)}


def openapi_body(model: type[BaseModel], *, required: bool = True) -> dict:
    """`openapi_extra` for a route whose body is `model`; its `$defs` move to components (install_openapi)."""
    content = {"application/json": {"schema": _schema_of(model)}}
    return {"requestBody": {"required": required, "content": content}}


def _hoist(node: Any, components: dict[str, Any]) -> Any:
    """`node` without its nested `$defs` (moved into `components`) and with their refs rewritten."""
    if isinstance(node, list):
        return [_hoist(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    for name, schema in node.get("$defs", {}).items():
        schema = _hoist(schema, components)
        if components.setdefault(name, schema) != schema:
            raise ValueError(f"OpenAPI: two different schemas are named {name!r}; rename one of the models")
    out = {key: _hoist(value, components) for key, value in node.items() if key != "$defs"}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(PYDANTIC_DEFS):
        out["$ref"] = COMPONENTS + ref[len(PYDANTIC_DEFS):]
    return out


def _drop_fastapi_422(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 `HTTPValidationError` for routes it validates; this app answers those
    errors 400 in the error shape (api/errors.py, documented by the routes' `responses=`), so the
    422 entry would document a body that is never sent."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            response = operation.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(response.get("content", {})):
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(name, None)


def _drop_free_form_siblings(document: dict[str, Any]) -> None:
    """A route that returns a `dict` gets FastAPI's free-form object schema; where `responses=`
    documents the answer (api/answers.py), FastAPI merges the two: keep the documented `$ref` only."""
    free_form = {"type", "additionalProperties", "title"}
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    schema = media.get("schema", {})
                    if "$ref" in schema and schema.get("additionalProperties") is True and set(schema) - {"$ref"} <= free_form:
                        media["schema"] = {"$ref": schema["$ref"]}


def build_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title, version=app.version, openapi_version=app.openapi_version, summary=app.summary,
        description=app.description, routes=app.routes, tags=app.openapi_tags, servers=app.servers,
    )
    components = dict(document.get("components", {}).get("schemas", {}))
    document["paths"] = _hoist(document.get("paths", {}), components)
    if components:
        document.setdefault("components", {})["schemas"] = dict(sorted(components.items()))
    _drop_fastapi_422(document)
    _drop_free_form_siblings(document)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve `build_document` at /openapi.json, built once on first use (as FastAPI does)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
