"""build_document: the pydantic `$defs` of raw-body routes become components, and two different
schemas under one name are refused rather than one silently replacing the other."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from coderapi.api.openapi import build_document, openapi_body


class Inner(BaseModel):
    x: int


class Outer(BaseModel):
    inner: Inner
    items: list[Inner] = []


def _app(*bodies: type[BaseModel]) -> FastAPI:
    app = FastAPI()
    for number, body in enumerate(bodies):
        app.add_api_route(f"/r{number}", lambda: None, methods=["POST"], openapi_extra=openapi_body(body))
    return app


def test_defs_move_to_components_and_refs_follow():
    document = build_document(_app(Outer))
    schemas = document["components"]["schemas"]
    assert set(schemas) >= {"Outer", "Inner"}
    assert schemas["Outer"]["properties"]["inner"] == {"$ref": "#/components/schemas/Inner"}
    body = document["paths"]["/r0"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Outer"}
    assert "$defs" not in str(document)


def test_two_different_schemas_under_one_name_are_refused():
    class Other(BaseModel):  # another model named Inner
        y: str

    Other.__name__ = "Inner"
    with pytest.raises(ValueError, match="Inner"):
        build_document(_app(Outer, Other))
