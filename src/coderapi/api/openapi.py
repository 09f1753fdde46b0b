"""OpenAPI helpers: the documented request body of routes that parse their raw body themselves
(after authentication, so an unauthenticated caller never makes the server parse a body)."""

from __future__ import annotations

from pydantic import BaseModel


def openapi_body(model: type[BaseModel], *, required: bool = True) -> dict:
    """`openapi_extra` for a route whose body is `model`."""
    content = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": required, "content": content}}
