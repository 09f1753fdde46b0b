"""Issue 10, cases a-c on the real llama.cpp: hostile grammars are 400s and the same server goes on
answering; a grammar that really crashes llama.cpp's parser only kills the sandbox process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import openai
import pytest

from tests.api.conftest import ALIAS_ID
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model

# What llama-cpp-python's converter wrote for `"maxLength": 20000`: one nested group per repetition.
CRASHING = "root ::= " + '("a" ' * 30000 + ")?" * 30000 + "\n"
FINE = 'root ::= "{" [a-z]{1,8} "}"\n'
MESSAGES = [{"role": "user", "content": "Say hi."}]


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}


CASES = [
    ("a", {"response_format": schema_format({"type": "string", "maxLength": 20000})}, "response_format"),
    ("b", {"response_format": schema_format({"type": "string", "pattern": "^a{0,20000}$"})}, "response_format"),
    ("c", {"tools": [{"type": "function", "function": {"name": "many", "parameters": {
        "type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "maxItems": 20000}}}}}],
        "tool_choice": "required"}, "tools[0].function.parameters"),
]


def test_the_crashing_grammar_really_kills_a_process_that_parses_it():
    """The hazard itself: parsed in a thread as the engine's worker parses, llama.cpp dies (SIGSEGV)."""
    script = textwrap.dedent("""
        import sys, threading, llama_cpp as lc
        lc.llama_backend_init()
        params = lc.llama_model_default_params(); params.vocab_only = True
        vocab = lc.llama_model_get_vocab(lc.llama_model_load_from_file(sys.argv[1].encode(), params))
        grammar = sys.stdin.buffer.read()
        thread = threading.Thread(target=lambda: lc.llama_sampler_init_grammar(vocab, grammar, b"root"))
        thread.start(); thread.join()
    """)
    done = subprocess.run([sys.executable, "-c", script, str(embedded_gguf())], input=CRASHING.encode(),
                          capture_output=True, timeout=300)
    assert done.returncode < 0, done.returncode  # killed by a signal


def test_the_sandbox_survives_a_grammar_that_crashes_llama_cpp():
    from coderapi.engines.llama_cpp.grammar_sandbox import CRASHED, GrammarSandbox

    sandbox = GrammarSandbox(embedded_gguf())
    try:
        assert sandbox.verify(FINE) is None
        assert sandbox.verify(CRASHING) == CRASHED  # bypasses the static guard: straight to llama.cpp
        assert sandbox.restarts == 1
        assert sandbox.verify(CRASHING) == CRASHED and sandbox.restarts == 1  # cached: no second crash
        assert sandbox.verify(FINE + "# again\n") is None  # a fresh helper took over
        assert "parse" in sandbox.verify('root ::= "a" (')  # llama.cpp's own refusal
    finally:
        sandbox.close()


@pytest.mark.parametrize(("case", "extra", "param"), CASES, ids=[c[0] for c in CASES])
def test_hostile_grammars_are_400s_and_the_server_still_completes(real_platform, case, extra, param):
    client = real_platform.client().with_options(timeout=300)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=ALIAS_ID, messages=MESSAGES, max_tokens=8, temperature=0, **extra)
    assert caught.value.body["param"] == param
    schema = {"type": "object", "properties": {"greeting": {"type": "string", "maxLength": 12}}, "required": ["greeting"]}
    done = client.chat.completions.create(model=ALIAS_ID, messages=MESSAGES, max_tokens=24, temperature=0,
                                          response_format=schema_format(schema))
    assert len(json.loads(done.choices[0].message.content)["greeting"]) <= 12


def test_the_servers_own_sandbox_takes_a_crash_and_the_server_goes_on(real_platform):
    engine = real_platform.services.registry.models[0].backend.engine
    assert engine.verify_grammar(CRASHING) is not None
    client = real_platform.client().with_options(timeout=300)
    done = client.chat.completions.create(model=ALIAS_ID, messages=MESSAGES, max_tokens=4, temperature=0)
    assert done.choices[0].finish_reason in ("stop", "length")
    with real_platform.http(real_platform.key) as http:
        assert http.get("/health").status_code == 200
