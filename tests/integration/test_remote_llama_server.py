"""The Coder layer over a real llama.cpp `llama-server` (backend "upstream", upstream_mode "coder",
upstream_api "llama-server"): chat, tool calls (auto and required, streamed and not), json_schema
(every schema of the embedded suite, 100% valid), FIM, a cancelled stream metered, and failover to
the next replica before the first token. The server runs the embedded 0.5B GGUF; greedy, short."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import ALIAS_ID
from tests.integration.embedded import embedded_gguf
from tests.integration.llama_server import coder_gateway, llama_server, stream_chat_then_hang_up
from tests.integration.test_completions_fim import PREFIX, SPECIALS, SUFFIX
from tests.integration.test_structured_output import SCHEMAS as JSON_SCHEMAS
from tests.integration.test_tools_real import PARIS, SCHEMAS, TOOLS, assert_valid_calls
from tests.servers import free_port

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    gguf = embedded_gguf()
    with llama_server(gguf, tmp_path_factory.mktemp("llama") / "llama-server.log") as running:
        yield running


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    # The replica runs 2 sequences at once (-np 2): the gateway sends at most 2 and queues the rest itself.
    with coder_gateway(tmp_path_factory.mktemp("gw"), [server.root + "/v1"], "llama-server", upstream_slots=2) as platform:
        yield platform


def sdk(platform):
    return platform.client().with_options(timeout=300)


def chat(platform, messages=PARIS, **extra):
    extra.setdefault("max_tokens", 60)
    return sdk(platform).chat.completions.create(model=ALIAS_ID, messages=messages, temperature=0, **extra)


def test_plain_chat_is_answered_and_counted_by_the_local_tokenizer(gateway):
    messages = [{"role": "user", "content": "Say hello in one short sentence."}]
    done = chat(gateway, messages, max_tokens=30)
    choice = done.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content.strip()
    assert not any(s in choice.message.content for s in SPECIALS)
    with gateway.http(gateway.key) as http:
        prompt = http.post("/tokenize", json={"model": ALIAS_ID, "messages": messages}).json()["count"]
    assert done.usage.prompt_tokens == prompt and done.usage.completion_tokens > 0


def test_control_markup_a_user_writes_reaches_the_server_as_text(gateway):
    """`</s>` (Qwen's control token 128247) in pasted HTML and `<|im_end|>` in a message are
    characters in the ids the gateway sends; only the template's own turn ends are control tokens."""
    messages = [{"role": "user", "content": "Price was <s>$20</s>, now $10.<|im_end|> Summarize."}]
    with gateway.http(gateway.key) as http:
        tokens = http.post("/tokenize", json={"model": ALIAS_ID, "messages": messages}).json()["tokens"]
    assert 128247 not in tokens and tokens.count(151645) == 2  # <|im_end|>: the system and user turns
    done = chat(gateway, messages, max_tokens=8)
    assert done.usage.prompt_tokens == len(tokens)


def test_auto_weather_question_becomes_a_call(gateway):
    choice = chat(gateway, tools=TOOLS).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["location"] == "Paris"
    assert_valid_calls([call])


def test_auto_streamed_call_matches_non_streamed(gateway):
    whole = chat(gateway, tools=TOOLS).choices[0].message.tool_calls
    chunks = list(chat(gateway, tools=TOOLS, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas) == whole[0].function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_required_forces_a_valid_call_streamed_and_not(gateway):
    messages = [{"role": "user", "content": "Hello there!"}]
    choice = chat(gateway, messages, tools=TOOLS, tool_choice="required").choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert_valid_calls(choice.message.tool_calls)
    chunks = list(chat(gateway, messages, tools=TOOLS, tool_choice="required", stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    arguments = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    Draft202012Validator(SCHEMAS[deltas[0].function.name]).validate(json.loads(arguments))


def test_json_schema_is_valid_for_every_schema_of_the_suite(gateway):
    invalid = []
    for name, prompt, schema in JSON_SCHEMAS:
        response_format = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        messages = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": prompt}]
        choice = chat(gateway, messages, response_format=response_format, max_tokens=160).choices[0]
        try:
            value = json.loads(choice.message.content)
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
        except ValueError as exc:
            errors = [str(exc)]
        if choice.finish_reason != "stop" or errors:
            invalid.append((name, choice.finish_reason, choice.message.content, errors))
    assert invalid == []


def test_fim_fills_the_middle_without_special_tokens(gateway):
    done = sdk(gateway).completions.create(
        model=ALIAS_ID, prompt=PREFIX, suffix=SUFFIX, max_tokens=96, temperature=0
    )
    middle = done.choices[0].text
    assert done.choices[0].finish_reason == "stop", middle
    assert not any(s in middle for s in SPECIALS) and "return" in middle
    ast.parse(PREFIX + middle + SUFFIX)


def _slots_busy(root: str) -> bool:
    return any(slot.get("is_processing") for slot in httpx.get(root + "/slots", timeout=5).json())


def test_a_cancelled_stream_is_metered_and_the_replica_stops(gateway, server):
    messages = [{"role": "user", "content": "Write a long story about a dragon who learns to code."}]
    with gateway.http(gateway.key) as http:
        prompt = http.post("/tokenize", json={"model": ALIAS_ID, "messages": messages}).json()["count"]
    payload = {"model": ALIAS_ID, "messages": messages, "max_tokens": 400, "temperature": 0}
    received = stream_chat_then_hang_up(gateway.base, gateway.key, payload, chunks=8)
    deadline = time.monotonic() + 30
    while not (rows := [r for r in gateway.usage_rows(gateway.user_id) if r.status == "cancelled"]):
        assert time.monotonic() < deadline, "no usage row for the cancelled stream"
        time.sleep(0.1)
    row = rows[-1]
    assert row.prompt_tokens == prompt
    assert len(received) <= row.completion_tokens < 400 and row.cost > 0
    deadline = time.monotonic() + 10  # the HTTP stream was closed: llama-server frees the slot
    while _slots_busy(server.root):
        assert time.monotonic() < deadline, "llama-server kept generating after the client hung up"
        time.sleep(0.1)


@pytest.fixture
def doomed_replica(tmp_path):
    """A real HTTP server whose /health answers 200 (a file named `health`), killed on demand."""
    (tmp_path / "health").write_text("ok")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the doomed replica did not start"
            time.sleep(0.1)
    yield url, proc
    proc.kill()
    proc.wait()


def test_a_replica_down_before_the_first_token_fails_over_to_the_next(server, doomed_replica, tmp_path):
    url, proc = doomed_replica
    with coder_gateway(tmp_path / "gw", [url + "/v1", server.root + "/v1"], "llama-server") as gateway:
        engine = gateway.services.registry.resolve(ALIAS_ID).backend.engine
        doomed = engine.pool.replicas[0]
        assert doomed.healthy  # it answered its health check: first in line for the next request
        proc.kill()
        proc.wait()
        done = chat(gateway, [{"role": "user", "content": "Say hi."}], max_tokens=8)
        assert done.choices[0].message.content
        assert not doomed.healthy and [r.outstanding for r in engine.pool.replicas] == [0, 0]


def test_a_replica_killed_after_the_first_token_ends_the_stream_with_an_upstream_error(tmp_path):
    """Past the first token there is no failing over (the client has text): a clear error instead."""
    import asyncio

    from coderapi.engines.base import SamplingParams
    from coderapi.engines.remote import RemoteCompletionEngine
    from coderapi.errors import UpstreamError

    gguf = embedded_gguf()
    endless = SamplingParams(max_tokens=500, temperature=0, logit_bias={151643: -100.0, 151645: -100.0})

    async def run(root: str, proc) -> tuple[int, UpstreamError | None, int]:
        engine = RemoteCompletionEngine([root], gguf, api="llama-server", context_length=8192, verify_grammars=False)
        await engine.start()
        assert engine.info.context_length == 2048  # lowered to the server's slot size (-c 4096 -np 2)
        prompt = engine.tokenize("<|im_start|>user\nCount to 1000.<|im_end|>\n<|im_start|>assistant\n")
        seen, error = 0, None
        try:
            async for _ in engine.generate(prompt, endless):
                seen += 1
                if seen == 3:
                    proc.kill()
        except UpstreamError as exc:
            error = exc
        finally:
            outstanding = engine.pool.outstanding
            await engine.close()
        return seen, error, outstanding

    with llama_server(gguf, tmp_path / "doomed.log") as doomed:
        seen, error, outstanding = asyncio.run(run(doomed.root, doomed.proc))
    assert error is not None and error.code == "upstream_stream_error", (seen, error)
    assert 3 <= seen < 500 and outstanding == 0
