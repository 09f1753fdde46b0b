"""Issue 10, cases a-c over HTTP: schemas whose grammar once crashed llama.cpp are 400s naming the
param (openai SDK and raw HTTP), and the server still answers afterwards."""

from __future__ import annotations

import openai
import pytest

from tests.api.conftest import ALIAS_ID

pytest.importorskip("llama_cpp")  # the grammars are built by llama-cpp-python's converter

MESSAGES = [{"role": "user", "content": "repeat: {}"}]
LONG_STRING = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 20000}}, "required": ["s"]}
LONG_PATTERN = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^a{0,20000}$"}}, "required": ["s"]}
MANY_ITEMS = {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "maxItems": 20000}}}
FINE_TOOL = {"type": "function", "function": {"name": "ok", "parameters": {"type": "object", "properties": {}}}}


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}


CASES = [
    ("a", {"response_format": schema_format(LONG_STRING)}, "response_format"),
    ("b", {"response_format": schema_format(LONG_PATTERN)}, "response_format"),
    ("c", {"tools": [FINE_TOOL, {"type": "function", "function": {"name": "many", "parameters": MANY_ITEMS}}],
           "tool_choice": "required"}, "tools[1].function.parameters"),
]


@pytest.mark.parametrize(("case", "extra", "param"), CASES, ids=[c[0] for c in CASES])
def test_hostile_grammar_is_a_400_naming_the_param_through_the_sdk(platform, case, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        platform.client().chat.completions.create(model=ALIAS_ID, messages=MESSAGES, max_tokens=4, **extra)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param
    assert caught.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(("case", "extra", "param"), CASES, ids=[c[0] for c in CASES])
def test_hostile_grammar_over_raw_http_then_the_server_still_answers(platform, case, extra, param):
    with platform.http(platform.key) as http:
        answer = http.post("/v1/chat/completions", json={"model": ALIAS_ID, "messages": MESSAGES, "max_tokens": 4, **extra})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == param
        assert http.get("/health").status_code == 200
        fine = http.post("/v1/chat/completions", json={"model": ALIAS_ID, "messages": MESSAGES, "max_tokens": 4})
        assert fine.status_code == 200, fine.text


def test_a_schema_nested_too_deep_is_a_400_naming_response_format(platform):
    deep: dict = {"type": "string"}
    for _ in range(40):  # over the schema limits, within what the JSON parser accepts (~200 levels)
        deep = {"type": "object", "properties": {"x": deep}}
    with platform.http(platform.key) as http:
        answer = http.post("/v1/chat/completions", json={
            "model": ALIAS_ID, "messages": MESSAGES, "max_tokens": 4, "response_format": schema_format(deep),
        })
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "response_format"
