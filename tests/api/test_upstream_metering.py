"""The upstream backend meters what it streamed, however the request ends, and never passes an
upstream's URL or error body on to the client.

The upstream is a real HTTP server on loopback (a small Starlette app) that streams slowly and
sends its usage only in its last chunk, as vLLM does; a client that hangs up never gets there.
The gateway has no tokenizer here (its `gguf` does not exist), so it counts by its documented
estimate; tests/integration/test_upstream_tokens.py counts with the real Qwen vocabulary.
"""

from __future__ import annotations


import pytest

from coderapi.backends.upstream.token_count import estimate_tokens
from tests.fake_upstream import MODEL, SECRET, WORD, launch_gateway, stream_then_hang_up

@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with launch_gateway(tmp_path_factory.mktemp("gw"), gguf="/nonexistent/tokenizer.gguf") as platform:
        yield platform


def _last_row(gateway, count: int):
    return gateway.wait_rows(gateway.user_id, count, timeout=10)[-1]


def test_a_stream_the_client_cancels_is_charged_for_what_was_streamed(gateway):
    before = len(gateway.usage_rows(gateway.user_id))
    content = "count me " * 20
    payload = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": True}
    received = stream_then_hang_up(gateway.base, gateway.key, payload, words=20, timeout=30)
    row = _last_row(gateway, before + 1)
    assert row.status == "cancelled"
    assert row.completion_tokens >= estimate_tokens(received) > 0  # at least what the client got
    assert row.completion_tokens < estimate_tokens(WORD * 400)  # not the whole answer: it stopped
    assert row.prompt_tokens >= estimate_tokens(content)
    assert row.cost > 0


def test_a_whole_stream_uses_the_upstream_usage(gateway):
    before = len(gateway.usage_rows(gateway.user_id))
    chunks = list(gateway.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "go"}], stream=True,
    ))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WORD * 400
    row = _last_row(gateway, before + 1)
    assert (row.status, row.prompt_tokens, row.completion_tokens) == ("success", 9, 400)


def test_an_answer_without_usage_is_counted_here(gateway):
    before = len(gateway.usage_rows(gateway.user_id))
    done = gateway.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == WORD * 5
    row = _last_row(gateway, before + 1)
    assert row.completion_tokens == estimate_tokens(WORD * 5) and row.cost > 0


def test_upstream_errors_do_not_leak_urls_or_bodies(gateway):
    api = gateway.http(gateway.key)
    failed = api.post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "fail"}]})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_error"
    assert SECRET not in failed.text and "127.0.0.1" not in failed.text and "crashed" not in failed.text
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "fail midway"}], "stream": True}
    streamed = api.post("/v1/chat/completions", json=payload)
    assert "upstream_stream_error" in streamed.text
    assert SECRET not in streamed.text and "worker died" not in streamed.text
