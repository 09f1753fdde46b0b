"""/openapi.json is a valid OpenAPI document whose every `$ref` resolves from the document's root
(validators, schemathesis and client generators follow them from there)."""

from __future__ import annotations

import json

import httpx
import pytest
from openapi_spec_validator import validate

from tests.api.conftest import Platform


@pytest.fixture(scope="module")
def document(platform: Platform) -> dict:
    return httpx.get(platform.base + "/openapi.json", timeout=30).raise_for_status().json()


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        return [r for key, value in node.items() for r in ([value] if key == "$ref" else _refs(value))]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_the_document_passes_an_openapi_validator(document):
    validate(document)


def _resolve(document: dict, ref: str):
    """The node a local `$ref` (a JSON pointer from the document's root) points at, or KeyError."""
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_ref_resolves_from_the_documents_root(document):
    # openapi-spec-validator 0.9 does not follow the schemas of request bodies, where the
    # unresolvable `#/$defs/...` refs were; so every ref is resolved here as well.
    refs = set(_refs(document))
    assert refs and "$defs" not in json.dumps(document)
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        _resolve(document, ref)
    for name in ("KeyLimit", "TextPart", "RepoFile", "ChatCompletionRequest", "CompletionRequest", "KeyUpdate"):
        assert name in document["components"]["schemas"]


def _body_schema(document: dict, path: str, method: str = "post") -> dict:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_request_bodies_are_documented_as_their_models(document):
    assert "messages" in _body_schema(document, "/v1/chat/completions")["properties"]
    assert "suffix" in _body_schema(document, "/v1/completions")["properties"]
    assert "limit" in _body_schema(document, "/v1/keys")["properties"]
    assert "limit" in _body_schema(document, "/v1/keys/{prefix}", "patch")["properties"]


def test_errors_are_documented_in_the_error_shape(document):
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "413", "429"):
        assert chat[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"message", "type", "param", "code"}
    assert "text/event-stream" in chat["200"]["content"]
    # validation errors are answered 400 in the error shape, never FastAPI's 422 HTTPValidationError
    tokenize = document["paths"]["/tokenize"]["post"]["responses"]
    assert "422" not in tokenize and "400" in tokenize
    assert "HTTPValidationError" not in document["components"]["schemas"]
