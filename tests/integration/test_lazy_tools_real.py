"""tool_choice "auto" on the real 0.5B: a call the model starts is finished under the call grammar.

Without the lazy grammar, the 0.5B answers "Show me what's in src/main.py" with a ```json call
named "src/main.py" (tests/fixtures/tool_corpus.jsonl, case read-file), which is no call; and
"Create a file hello.py ..." with one named "print_hello". Under the grammar the name can only be
an offered function and the arguments follow its schema.
"""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import ALIAS_ID, SERVED_ID

pytestmark = pytest.mark.model

_S = {"type": "string"}


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


FILES = [
    _tool("read_file", "Read a text file and return its content.", {"path": _S}, ["path"]),
    _tool("write_file", "Write text to a file, replacing it.", {"path": _S, "content": _S}, ["path", "content"]),
    _tool("list_directory", "List the entries of a directory.", {"path": _S}, ["path"]),
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in FILES}


def chat(platform, text: str, **extra):
    messages = [{"role": "user", "content": text}]
    return platform.client().with_options(timeout=300).chat.completions.create(
        model=ALIAS_ID, messages=messages, tools=FILES, temperature=0, max_tokens=80, **extra)


def assert_valid(calls) -> None:
    assert calls
    for call in calls:
        assert call.function.name in SCHEMAS
        Draft202012Validator(SCHEMAS[call.function.name]).validate(json.loads(call.function.arguments))


@pytest.mark.parametrize("text", ["Show me what's in src/main.py",
                                  "Create a file hello.py containing: print('hello world')"])
def test_a_call_with_a_wrong_name_today_becomes_a_valid_call(real_platform, text):
    choice = chat(real_platform, text).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert_valid(choice.message.tool_calls)


def test_streamed_equals_non_streamed(real_platform):
    text = "Show me what's in src/main.py"
    whole = chat(real_platform, text).choices[0].message
    assert_valid(whole.tool_calls)
    chunks = list(chat(real_platform, text, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == (whole.content or "")
    assert [d.function.name for d in deltas if d.function.name] == [c.function.name for c in whole.tool_calls]
    assert "".join(d.function.arguments or "" for d in deltas) == "".join(c.function.arguments for c in whole.tool_calls)


def test_the_grammar_the_model_is_held_to_is_accepted_by_llama_cpp(real_platform):
    """The runtime grammar (the model's opening and residual as literals) parses in real llama.cpp."""
    from coderapi.backends.coder.call_triggers import Trigger
    from coderapi.backends.coder.lazy_grammar import lazy_tool_grammar
    from coderapi.protocol.chat import Tool

    engine = real_platform.services.registry.resolve(SERVED_ID).backend.engine
    grammar = lazy_tool_grammar([Tool.model_validate(t) for t in FILES], True, engine.verify_grammar)
    assert grammar is not None
    for trigger, residual in [(Trigger(0, "fence", "```json \n  ", True), ' "\\\té'),
                              (Trigger(0, "tag", "<tool_call>", False), ""), (Trigger(0, "bare", "", False), "\n")]:
        assert engine.verify_grammar(grammar.for_trigger(trigger, residual)) is None
