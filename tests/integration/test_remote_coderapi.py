"""The Coder layer over another coderapi (upstream_api "openai-completions", as for vLLM): a real
`coderapi serve` on its embedded model is the replica; the gateway sends it token-id prompts with
`structured_outputs.grammar` and `return_tokens_as_token_ids`, and parses the calls itself."""

from __future__ import annotations

import json
import os

import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import ALIAS_ID, SERVED_ID
from tests.integration.conftest import MODEL_CACHE
from tests.integration.llama_server import coder_gateway
from tests.integration.test_structured_output import SCHEMAS as JSON_SCHEMAS
from tests.integration.test_tools_real import PARIS, TOOLS, assert_valid_calls
from tests.servers import coderapi_serve

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    data = tmp_path_factory.mktemp("replica")
    env = {
        **os.environ, "CODERAPI_DATA_DIR": str(data), "CODERAPI_MODEL_CACHE_DIR": str(MODEL_CACHE),
        "CODERAPI_LOG_LEVEL": "warning",
    }
    with coderapi_serve([], env=env, log_path=data / "server.log", healthy_within=180) as served:
        yield served


@pytest.fixture(scope="module")
def gateway(replica, tmp_path_factory):
    with coder_gateway(
        tmp_path_factory.mktemp("gw"), [replica.base + "/v1"], "openai-completions",
        upstream_model=SERVED_ID, upstream_api_key=replica.key,
    ) as platform:
        yield platform


def chat(platform, messages=PARIS, **extra):
    extra.setdefault("max_tokens", 60)
    return platform.client().with_options(timeout=300).chat.completions.create(
        model=ALIAS_ID, messages=messages, temperature=0, **extra)


def test_tool_calls_required_and_auto(gateway):
    choice = chat(gateway, [{"role": "user", "content": "Hello there!"}], tools=TOOLS, tool_choice="required").choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert_valid_calls(choice.message.tool_calls)
    chunks = list(chat(gateway, tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas))["location"] == "Paris"


@pytest.mark.parametrize("name", ["person", "large_enum", "shape_union"])
def test_json_schema_is_valid(gateway, name):
    [(_, prompt, schema)] = [s for s in JSON_SCHEMAS if s[0] == name]
    response_format = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    messages = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": prompt}]
    done = chat(gateway, messages, response_format=response_format, max_tokens=160)
    choice = done.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    Draft202012Validator(schema).validate(json.loads(choice.message.content))
    assert done.usage.completion_tokens > 0


def test_a_grammar_llama_cpp_refuses_is_a_400_naming_structured_outputs_grammar(replica):
    import httpx

    with httpx.Client(base_url=replica.base, headers={"Authorization": f"Bearer {replica.key}"}, timeout=60) as http:
        answer = http.post("/v1/completions", json={
            "model": SERVED_ID, "prompt": "x", "max_tokens": 4, "structured_outputs": {"grammar": 'root ::= "a" ['},
        })
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "structured_outputs.grammar"
