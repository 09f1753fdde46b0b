"""Chat completions through the real openai SDK and the documented `requests` example."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import requests

from coderapi.engines.fake import GREETING
from tests.api.conftest import ALIAS_ID, SERVED_ID


def test_documented_requests_example(platform):
    # The hosted API's documented Python example, verbatim but for the base URL.
    response = requests.post(
        platform.base + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {platform.key}", "Content-Type": "application/json"},
        json={"model": "Qwen/Qwen2.5-Coder-32B-Instruct", "messages": [{"role": "user", "content": "Hello"}]},
    )
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["model"] == SERVED_ID  # names the weights that really answered
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert choice["message"] == {"role": "assistant", "content": GREETING, "refusal": None, "tool_calls": []}
    usage = data["usage"]
    assert usage["completion_tokens"] == len(GREETING.encode()) + 1  # bytes, then the end token
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.headers["x-request-id"]


def test_openai_sdk_non_streaming(platform):
    completion = platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert completion.choices[0].message.content == GREETING
    assert completion.choices[0].message.tool_calls == []
    assert completion.usage.prompt_tokens > 0


def test_openai_sdk_streaming_with_usage(platform):
    stream = platform.client().chat.completions.create(
        model=ALIAS_ID,
        messages=[{"role": "user", "content": "repeat: héllo wörld ✓"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "héllo wörld ✓"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len("héllo wörld ✓".encode()) + 1


def test_stream_without_usage_ends_with_done(platform):
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream("POST", platform.base + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {platform.key}"}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    assert payloads and all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert all(p.get("usage") is None for p in payloads)  # no usage chunk unless include_usage asks for it
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p["choices"]) == GREETING


def test_stop_sequence_across_tokens_is_not_returned(platform):
    client = platform.client()
    messages = [{"role": "user", "content": "repeat: one two STOP three"}]
    done = client.chat.completions.create(model=ALIAS_ID, messages=messages, stop=["STOP", "zzz"])
    assert done.choices[0].message.content == "one two "
    assert done.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model=ALIAS_ID, messages=messages, stop="STOP", stream=True)
    pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    assert "".join(pieces) == "one two "
    assert not any("S" in p for p in pieces)  # no partial stop string ever leaves the server


def test_max_tokens_gives_length(platform):
    done = platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: abcdefgh"}], max_tokens=3
    )
    assert done.choices[0].message.content == "abc"
    assert done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == 3


def test_n_choices(platform):
    done = platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: x"}], n=3
    )
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert all(c.message.content == "x" for c in done.choices)


def test_logprobs_shape(platform):
    done = platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: ab"}], logprobs=True, top_logprobs=2
    )
    content = done.choices[0].logprobs.content
    assert [entry.token for entry in content] == ["a", "b"]
    assert all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in content)


def test_x_request_id_echoed_and_generated(platform):
    mine = httpx.get(platform.base + "/v1/models", headers={"x-request-id": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    error = httpx.post(platform.base + "/v1/chat/completions", json={})
    assert error.status_code == 401 and error.headers["x-request-id"].startswith("req_")
