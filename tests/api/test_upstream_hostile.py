"""A pass-through gateway in front of a misbehaving replica (tests/raw_upstream.py, scripted per
prompt): its usage is a claim, billed only as whole numbers within the request's worst case; its
streams and bodies are bounded; anything shaped unlike an OpenAI answer, a redirect or an odd
Retry-After is a clean upstream error, never a 500."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import pytest

from coderapi.backends.upstream import client
from coderapi.backends.upstream.token_count import estimate_tokens
from tests.api.conftest import Platform
from tests.raw_upstream import MODEL, passthrough_gateway, raw_upstream

PRICE = 100.0  # USD per million tokens, in and out: a lie of 1e12 tokens would cost $2e8
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
END = b"0\r\n\r\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with raw_upstream() as upstream, passthrough_gateway(
        tmp_path_factory.mktemp("gw"), upstream, "hostile@example.com", gguf="/nonexistent/tokenizer.gguf",
        price_input_per_million=PRICE, price_output_per_million=PRICE,
    ) as platform:
        yield platform, upstream


# -- what the replica sends ----------------------------------------------------------------------

def whole(status: int, body, headers: bytes = b"") -> bytes:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, len(content), headers, content))


def chat(content="hi", usage=None) -> dict:
    answer = {"id": "r", "object": "chat.completion", "created": 0, "model": MODEL,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    return {**answer, "usage": usage} if usage is not None else answer


def completion(text="hi", usage=None, **choice) -> dict:
    answer = {"id": "r", "object": "text_completion", "created": 0, "model": MODEL,
              "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None, **choice}]}
    return {**answer, "usage": usage} if usage is not None else answer


def usage(prompt, completion_tokens) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": 0}


def chunk(content: str | None = "a", usage=None, finish=None) -> dict:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    data = {"id": "r", "object": "chat.completion.chunk", "created": 0, "model": MODEL, "choices": choices}
    return {**data, "usage": usage} if usage is not None else data


def event(data) -> bytes:
    line = b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode()) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(line), line)


def stream(*events) -> bytes:
    return SSE_HEAD + b"".join(event(e) for e in events) + event(b"[DONE]") + END


class Endless:
    """Streams `piece` forever (30 s at most), as a replica that ignores max_tokens; `stopped` is
    when it noticed the gateway had hung up."""

    def __init__(self, piece: dict) -> None:
        self.piece = event(piece)
        self.stopped: float | None = None

    async def __call__(self, writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                writer.write(self.piece)
                await writer.drain()
            writer.write(event(b"[DONE]") + END)
        except ConnectionError:
            self.stopped = time.monotonic()
            raise


def _post(platform: Platform, prompt: str, **extra):
    body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16, **extra}
    return platform.http(platform.key).post("/v1/chat/completions", json=body)


def _last_row(platform: Platform, before: int):
    rows = platform.wait_rows(platform.user_id, before + 1, timeout=10)
    assert len(rows) == before + 1, "no usage row was written"
    return rows[-1]


def _rows(platform: Platform) -> int:
    return len(platform.usage_rows(platform.user_id))


def _events(text: str) -> list:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


# -- 1. usage -------------------------------------------------------------------------------------

def test_usage_past_the_requests_worst_case_is_billed_at_the_worst_case(gateway):
    platform, upstream = gateway
    upstream.scripts["lie big"] = whole(200, chat(usage=usage(10**12, 10**12)))
    before = _rows(platform)
    answer = _post(platform, "lie big")
    assert answer.status_code == 200, answer.text
    shown = answer.json()["usage"]
    row = _last_row(platform, before)
    assert shown["completion_tokens"] == row.completion_tokens == 16  # max_tokens, as the hold counted it
    assert shown["prompt_tokens"] == row.prompt_tokens < 1000  # the forwarded body's bytes + 512 at most
    assert row.cost == Decimal(row.prompt_tokens + 16) * Decimal(PRICE) / 1_000_000 < Decimal("0.1")


@pytest.mark.parametrize("lie", [usage(-10**9, -10**9), usage(1.5, "7"), usage(1, None), "lots", [1, 2]])
def test_usage_that_is_not_token_counts_is_counted_here(gateway, lie):
    platform, upstream = gateway
    upstream.scripts["lie odd"] = whole(200, chat(content="count me here", usage=lie))
    before = _rows(platform)
    answer = _post(platform, "lie odd")
    assert answer.status_code == 200, answer.text
    row = _last_row(platform, before)
    assert (row.status, row.completion_tokens) == ("success", estimate_tokens("count me here"))
    assert answer.json()["usage"]["completion_tokens"] == row.completion_tokens and row.prompt_tokens > 0


def test_a_not_a_number_in_usage_is_counted_here(gateway):
    platform, upstream = gateway
    upstream.scripts["lie nan"] = whole(200, json.dumps(chat(usage=usage(1, 1))).replace('"completion_tokens": 1', '"completion_tokens": NaN').encode())
    before = _rows(platform)
    answer = _post(platform, "lie nan")
    assert answer.status_code == 200, answer.text
    assert _last_row(platform, before).completion_tokens == estimate_tokens("hi")


@pytest.mark.parametrize("lie", [usage(-10**9, -10**9), usage(10**12, 10**12)])
def test_a_streams_usage_is_shown_and_billed_sanitized(gateway, lie):
    platform, upstream = gateway
    upstream.scripts["stream lie"] = stream(chunk("hi"), chunk(None, usage=lie))
    before = _rows(platform)
    answer = _post(platform, "stream lie", stream=True, stream_options={"include_usage": True})
    shown = [e["usage"] for e in _events(answer.text) if e.get("usage")]
    row = _last_row(platform, before)
    assert len(shown) == 1 and shown[0]["completion_tokens"] == row.completion_tokens
    assert 0 <= row.completion_tokens <= 16 and 0 <= row.prompt_tokens < 1000 and row.status == "success"


# -- 2. streams past their budget -----------------------------------------------------------------

@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_past_its_budget_ends_with_length_billed_at_its_budget(gateway, include_usage):
    platform, upstream = gateway
    endless = upstream.scripts["forever"] = Endless(chunk("z" * 1000))
    before = _rows(platform)
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    answer = _post(platform, "forever", stream=True, **extra)
    assert answer.status_code == 200 and answer.text.endswith("data: [DONE]\n\n")
    events = _events(answer.text)
    text = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert len(text) <= 16 * 64  # relayed no further than 64 characters a token of max_tokens
    assert [c["finish_reason"] for c in events[-2 if include_usage else -1]["choices"]] == ["length"]
    row = _last_row(platform, before)
    assert (row.status, row.completion_tokens, row.finish_reason) == ("success", 16, "length")
    if include_usage:
        assert events[-1]["usage"]["completion_tokens"] == 16
    deadline = time.monotonic() + 5
    while endless.stopped is None:  # the replica's connection was closed: it stops generating
        assert time.monotonic() < deadline, "the gateway kept reading a stream it stopped relaying"
        time.sleep(0.05)


def test_a_stream_of_empty_chunks_forever_is_cut(gateway):
    platform, upstream = gateway
    upstream.scripts["empty forever"] = Endless(chunk(""))
    answer = _post(platform, "empty forever", stream=True)
    assert answer.status_code == 200 and answer.text.endswith("data: [DONE]\n\n")
    assert len(answer.content) < 4 * 1024 * 1024  # 16 x 8 KiB + 1 MiB of events, and the ends


# -- 3. whole answers past the body cap -----------------------------------------------------------

def test_a_whole_answer_past_the_body_cap_is_a_502(gateway, monkeypatch):
    platform, upstream = gateway
    monkeypatch.setattr(client, "MAX_BODY", 1024 * 1024)
    upstream.scripts["huge body"] = whole(200, chat(content="x" * (2 * 1024 * 1024), usage=usage(1, 1)))
    upstream.scripts["claims huge"] = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000000\r\n\r\n{}"
    for prompt in ("huge body", "claims huge"):
        answer = _post(platform, prompt)
        assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_error", answer.text


# -- 4. Retry-After -------------------------------------------------------------------------------

@pytest.mark.parametrize("sent, relayed", [("9" * 400, "3600"), ("1" * 300, "3600"), ("²", "1"), ("7.2", "8"), ("soon", "1")])
def test_an_upstreams_retry_after_is_parsed_and_bounded(gateway, sent, relayed):
    platform, upstream = gateway
    upstream.scripts["busy"] = whole(429, b"{}", b"retry-after: " + sent.encode() + b"\r\n")
    answer = _post(platform, "busy")
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == relayed


# -- 5. answers of another shape ------------------------------------------------------------------

MALFORMED_WHOLE = {
    "a list": b"[1, 2, 3]",
    "a number": b"5",
    "choices a string": json.dumps({**chat(), "choices": "nope"}).encode(),
    "content a number": json.dumps(chat(content=5, usage=usage(1, 1))).encode(),
    "logprobs of another shape": json.dumps({**chat(), "choices": [{**chat()["choices"][0], "logprobs": {"content": [{"token": 1, "logprob": "x"}]}}]}).encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED_WHOLE))
def test_a_whole_answer_of_another_shape_is_a_clean_502(gateway, name):
    platform, upstream = gateway
    upstream.scripts["malformed"] = whole(200, MALFORMED_WHOLE[name])
    answer = _post(platform, "malformed")
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["code"] == "upstream_error"


@pytest.mark.parametrize("logprobs", [{"tokens": 5, "token_logprobs": "x"}, {"tokens": ["a"], "top_logprobs": None}])
def test_a_completion_with_logprobs_of_another_shape_is_a_clean_502(gateway, logprobs):
    platform, upstream = gateway
    upstream.scripts["def bad("] = whole(200, completion(usage=usage(1, 1), logprobs=logprobs))
    answer = platform.http(platform.key).post("/v1/completions", json={"model": MODEL, "prompt": "def bad(", "max_tokens": 16})
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_error", answer.text


@pytest.mark.parametrize("bad", [b"5", b"[1, 2]", {"choices": "zzz"}, {"choices": [{"index": 0, "delta": {"content": 5}}]}])
def test_a_stream_event_of_another_shape_is_an_upstream_error(gateway, bad):
    platform, upstream = gateway
    upstream.scripts["bad first"] = stream(bad)
    first = _post(platform, "bad first", stream=True)
    assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_stream_error", first.text
    upstream.scripts["bad later"] = stream(chunk("a"), bad)
    later = _post(platform, "bad later", stream=True)
    assert later.status_code == 200 and later.text.endswith("data: [DONE]\n\n")
    assert _events(later.text)[-1]["error"]["code"] == "upstream_stream_error"


@pytest.mark.parametrize("answer", [whole(200, chat(usage=usage(1, 1))), stream()])
def test_a_stream_answered_without_a_chunk_is_an_upstream_error(gateway, answer):
    platform, upstream = gateway
    upstream.scripts["no chunk"] = answer
    response = _post(platform, "no chunk", stream=True)
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_stream_error", response.text


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"count": 3}', b'{"tokens": "abc"}', b"[1]"])
def test_tokenize_with_an_answer_of_another_shape_is_a_clean_502(gateway, body):
    platform, upstream = gateway
    upstream.scripts["tokenize me"] = whole(200, body)
    answer = platform.http(platform.key).post("/tokenize", json={"model": MODEL, "prompt": "tokenize me"})
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_error", answer.text


# -- 7. redirects ---------------------------------------------------------------------------------

def test_a_redirect_is_an_upstream_error_not_followed(gateway):
    platform, upstream = gateway
    upstream.scripts["redirect"] = whole(302, chat(content="redirected", usage=usage(1, 1)), b"location: http://127.0.0.1:1/evil\r\n")
    answer = _post(platform, "redirect")
    assert answer.status_code == 502 and "redirected" not in answer.text
    assert answer.json()["error"]["code"] == "upstream_error"



def test_a_whole_answer_with_more_logprobs_than_the_bound_is_refused_before_the_replica(gateway):
    """A replica's whole answer is parsed at once on the event loop (a 16 MiB one of logprobs held
    it 4-5 s), so a non-streamed request that could bring more than 16,384 entries (choices ×
    max_tokens × (1 + top_logprobs)) is 400 before it is sent; streamed, it is relayed."""
    platform, upstream = gateway
    asked = []

    async def answer(writer):
        asked.append(1)
        writer.write(whole(200, chat(usage=usage(5, 1))))

    upstream.scripts["many logprobs"] = answer
    big = {"n": 8, "max_tokens": 1000, "logprobs": True, "top_logprobs": 20}  # 168,000 entries
    refused = _post(platform, "many logprobs", **big)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("logprobs_too_large", "top_logprobs") and "168000" in error["message"]
    assert not asked  # the replica never saw it
    at_the_bound = {"max_tokens": 780, "logprobs": True, "top_logprobs": 20}  # 16,380 entries
    assert _post(platform, "many logprobs", **{**at_the_bound, "max_tokens": 781}).status_code == 400
    assert _post(platform, "many logprobs", **at_the_bound).status_code == 200 and asked
    upstream.scripts["many logprobs streamed"] = stream(chunk("hi", finish="stop"), chunk(None, usage=usage(5, 1)))
    assert _post(platform, "many logprobs streamed", stream=True, **big).status_code == 200
