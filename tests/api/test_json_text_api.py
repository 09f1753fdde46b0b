"""JSON inside requests and answers that Python's parser could not read back (nested past its
recursion limit, integers past 4,300 digits, numbers past a double) is a 400 or plain text, never a
500: a tool call's `arguments` in the history, a schema's numbers, a call the model writes."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import ALIAS_ID

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {}}}}}


def _post_raw(platform, body: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {platform.key}", "content-type": "application/json"}
    return httpx.post(platform.base + "/v1/chat/completions", content=body, headers=headers, timeout=60)


def _history_with_arguments(arguments: str, stream: bool) -> str:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c", "content": "ok"}]
    return json.dumps({"model": ALIAS_ID, "messages": messages, "tools": [TOOL], "stream": stream})


@pytest.mark.parametrize("arguments", ["[" * 5000 + "]" * 5000, '{"a": ' + "1" * 5000 + "}", '{"a": 1e400}'],
                         ids=["deep", "huge integer", "past a double"])
@pytest.mark.parametrize("stream", [False, True])
def test_unreadable_tool_call_arguments_in_the_history_are_a_400_and_recorded(platform, arguments, stream):
    before = len(platform.usage_rows())
    answer = _post_raw(platform, _history_with_arguments(arguments, stream))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "messages" and "messages[1].tool_calls" in error["message"]
    [row] = platform.wait_rows(None, before + 1)[before:]
    assert row.status == "error" and row.status_code == 400 and row.cost == 0


@pytest.mark.parametrize("schema", ['{"enum": [1e400]}', '{"type": "number", "minimum": -1e400}'])
def test_a_schema_number_past_a_double_is_a_400_naming_response_format(platform, schema):
    body = '{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "response_format": ' \
           '{"type": "json_schema", "json_schema": {"name": "s", "schema": %s}}}' % (ALIAS_ID, schema)
    answer = _post_raw(platform, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "response_format"
    assert "beyond the range of a double" in answer.json()["error"]["message"]


def test_a_call_whose_arguments_cannot_be_written_back_as_json_is_text(platform):
    reply = '{"arguments": {"a": 1e400}, "name": "f"}'  # the name last: parsed whole, then re-written
    done = platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: " + reply}], tools=[TOOL]
    )
    message = done.choices[0].message
    assert not message.tool_calls and message.content == reply
    assert done.usage.completion_tokens > 0
