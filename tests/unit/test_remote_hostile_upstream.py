"""The remote engine against a replica that misbehaves: every value it sends is checked before it
is used. An id outside the vocabulary, a count past the request's room, an event of the wrong
shape or an endless line is a protocol error (502, or the next replica before the first token),
never a crash, a 500 or gigabytes held; a Retry-After or a cached-token count is bounded.
Replicas are httpx.MockTransport handlers: no sockets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from coderapi.engines.base import SamplingParams, TopLogprob
from coderapi.engines.remote import RemoteCompletionEngine
from coderapi.engines.remote.dialects import MIN_LOGPROB, LlamaServerDialect, OpenAICompletionsDialect, ServerTokens, TokenLogprob
from coderapi.engines.remote.errors import ProtocolError, error_for
from coderapi.engines.remote.lines import MAX_SSE_LINE
from coderapi.engines.remote.tokenizer import FamilyTokenizer
from coderapi.errors import Overloaded, UpstreamError
from tests.unit.test_remote_engine_stream import EOS, ByteTokenizer, assemble

OC, LS = OpenAICompletionsDialect(), LlamaServerDialect()
URLS = ["http://a:1/v1", "http://b:1/v1"]


class LoadedByteTokenizer(ByteTokenizer):
    """The stub with what `RemoteCompletionEngine.start` reads of a FamilyTokenizer."""

    chat_template, bos_token, eos_token, metadata, control_texts = None, "", "", {}, frozenset()

    def load(self) -> None:
        pass


def sse(*events) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


def chunk(text="", ids=None, finish=None, **logprobs) -> dict:
    """An openai-completions stream chunk; `ids` come back as "token_id:N"."""
    if ids is not None:
        logprobs = {"tokens": [f"token_id:{i}" for i in ids], **logprobs}
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs or None}]}


GOOD = sse(chunk("a", [97]), chunk("", finish="stop"), b"[DONE]")


async def streamed(data: bytes):
    yield data  # a body given as bytes would be read already: a replica's never is


async def engine_over(replies: dict[str, object], api: str = "openai-completions") -> RemoteCompletionEngine:
    """A started engine whose replica at host h answers each POST with `replies[h]` (bytes of a
    stream, an httpx.Response, or a callable making either)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": [], "default_generation_settings": {"n_ctx": 4096}})
        reply = replies[request.url.host]
        reply = reply() if callable(reply) else reply
        return reply if isinstance(reply, httpx.Response) else httpx.Response(200, content=streamed(reply))

    urls = [f"http://{host}:1/v1" for host in replies]
    engine = RemoteCompletionEngine(urls, Path("family.gguf"), api=api, model="m", context_length=4096,
                                    verify_grammars=False, transport=httpx.MockTransport(handle))
    engine.tokenizer = LoadedByteTokenizer()
    await engine.start()
    return engine


async def run(engine: RemoteCompletionEngine, **params) -> tuple[list, Exception | None]:
    params.setdefault("max_tokens", 20)
    events, error = [], None
    try:
        async for event in engine.generate([1, 2, 3], SamplingParams(**params)):
            events.append(event)
    except Exception as exc:  # noqa: BLE001 - the test looks at which one
        error = exc
    finally:
        await engine.close()
    return events, error


# -- 1. token ids outside the vocabulary (llama.cpp would abort the process) ---------------------


@pytest.mark.parametrize("message", [
    OC.parse(chunk("x", [99999999])),
    LS.parse({"content": "x", "tokens": [99999999], "tokens_predicted": 1}),
    LS.parse({"content": "x", "tokens": [-7], "tokens_predicted": 1}),
    ServerTokens([97], "a", logprobs=[TokenLogprob(-0.1, [TopLogprob(10**9, "", -0.2)])]),
])
def test_a_token_id_outside_the_vocabulary_is_a_protocol_error_before_any_token(message):
    with pytest.raises(ProtocolError, match="outside the vocabulary"):
        assemble([message], logprobs=1)


def test_the_family_tokenizer_refuses_an_id_outside_the_vocabulary_itself():
    class Vocab:  # llama.cpp's, which aborts on such an id: these must not be reached
        n_vocab = 10

        def piece(self, token_id, special=False):
            return b"x"

        def is_eog(self, token_id):
            return False

    tokenizer = FamilyTokenizer(Path("family.gguf"))
    tokenizer._model = Vocab()
    assert tokenizer.piece(9) == b"x" and not tokenizer.is_eog(0)
    for bad in (10, -1):
        with pytest.raises(ValueError):
            tokenizer.piece(bad)
        with pytest.raises(ValueError):
            tokenizer.is_eog(bad)


async def test_a_replica_sending_an_unknown_id_is_passed_over_and_marked_failed():
    engine = await engine_over({"a": sse(chunk("x", [99999999])), "b": GOOD})
    bad = engine.pool.replicas[0]
    events, error = await run(engine)
    assert error is None and [e.token_id for e in events] == [97, EOS] and not bad.healthy


# -- 2. stream lines are capped --------------------------------------------------------------------


async def test_a_line_past_max_sse_line_ends_the_stream_as_an_upstream_error_without_reading_on():
    sent = []

    async def endless_line():
        yield b"data: "
        for _ in range(MAX_SSE_LINE // 2**20 + 8):  # 8 MiB past the cap, no newline
            sent.append(2**20)
            yield b"y" * 2**20

    engine = await engine_over({"a": lambda: httpx.Response(200, content=endless_line())})
    events, error = await run(engine)
    assert isinstance(error, UpstreamError) and error.status_code == 502 and error.code == "upstream_error"
    assert sum(sent) <= MAX_SSE_LINE + 2 * 2**20  # reading stopped at the cap


# -- 3. a count past the request's room ----------------------------------------------------------


def test_a_count_past_what_the_request_may_produce_is_refused_before_anything_is_built():
    with pytest.raises(ProtocolError, match="tokens_predicted"):
        assemble([ServerTokens([97], "a", predicted=10**6)], max_tokens=50)
    with pytest.raises(ProtocolError):  # the final event's count too
        assemble([ServerTokens([97], "a", predicted=1), ServerTokens([], predicted=51, finish="length")], max_tokens=50)
    assert len(assemble([ServerTokens([97], "a", predicted=3)], max_tokens=3)) == 3  # at the room: filled in


# -- 4. malformed events -----------------------------------------------------------------------


@pytest.mark.parametrize("dialect, data", [
    (OC, {"choices": "abc"}),
    (OC, {"choices": ["abc"]}),
    (OC, chunk(5)),
    (OC, chunk("x", [87], top_logprobs=[[1, 2]])),
    (OC, chunk("x", [87], token_logprobs=["x"])),
    (OC, {"choices": [{"text": "x", "logprobs": {"tokens": 5}}]}),
    (OC, {"choices": [{"text": "x", "logprobs": {"tokens": [7]}}]}),
    (OC, chunk("x", finish="abort")),
    (OC, {"choices": [{"text": "x", "logprobs": {"tokens": ["token_id:²"]}}]}),
    (OC, {"choices": [{"text": "x", "logprobs": {"tokens": ["token_id:" + "9" * 5000]}}]}),
    (LS, {"content": "x", "tokens": [87], "tokens_predicted": 1, "completion_probabilities": [{"nope": 1}]}),
    (LS, {"content": "x", "tokens": [87], "completion_probabilities": [{"logprob": -1, "top_logprobs": [{"id": "87", "logprob": -1}]}]}),
    (LS, {"content": "x", "tokens": "abc", "tokens_predicted": 3}),
    (LS, {"content": "x", "tokens": [87.0]}),
    (LS, {"content": "x", "tokens": [87], "tokens_predicted": "5"}),
    (LS, {"content": 5, "tokens": [87]}),
    (LS, {"stop": "yes"}),
])
def test_an_event_of_the_wrong_shape_is_a_protocol_error(dialect, data):
    with pytest.raises(ProtocolError):
        dialect.parse(data)


@pytest.mark.parametrize("bad", [b"{bad json", b"5", b"[1,2]", b"\xff\xfe", b"[" * 100000])
async def test_a_bad_event_before_the_first_token_fails_over_and_is_a_502_when_none_is_left(bad):
    engine = await engine_over({"a": sse(bad), "b": GOOD})
    events, error = await run(engine)
    assert error is None and [e.token_id for e in events] == [97, EOS]
    engine = await engine_over({"a": sse(bad)})
    events, error = await run(engine)
    assert events == [] and isinstance(error, UpstreamError) and error.status_code == 502 and error.code == "upstream_error"


async def test_a_bad_event_after_the_first_token_ends_the_stream_with_upstream_stream_error():
    engine = await engine_over({"a": sse(chunk("a", [97]), {"choices": "zzz"}), "b": GOOD})
    events, error = await run(engine)
    assert [e.token_id for e in events] == [97]  # the next replica is not asked: tokens were given out
    assert isinstance(error, UpstreamError) and error.code == "upstream_stream_error"


# -- 5. Retry-After of a busy replica -----------------------------------------------------------


@pytest.mark.parametrize("header, relayed", [
    ("30", "30"), ("2.5", "3"), (None, "1"), ("0", "1"), ("7200", "3600"), ("9" * 400, "3600"), ("1" + "0" * 300, "3600"),
    ("²", "1"), ("inf", "1"), ("nan", "1"), ("-5", "1"), ("Wed, 21 Oct 2015 07:28:00 GMT", "1"),
])
def test_an_upstream_retry_after_is_read_within_1_to_3600_seconds(header, relayed):
    error = error_for(429, b"{}", header, "http://a:1/v1")
    assert isinstance(error, Overloaded) and error.headers["retry-after"] == relayed


# -- 6. text without ids -------------------------------------------------------------------------


def test_text_sent_without_ids_is_kept_and_its_end_token_ends_the_sequence_without_text():
    events = assemble([OC.parse(chunk("hello world<eos>")), OC.parse(chunk("", finish="stop"))])
    assert "".join(e.text for e in events) == "hello world"
    assert events[-1].token_id == EOS and events[-1].finish_reason == "stop" and len(events) == len("hello world") + 1
    assert "".join(e.text for e in assemble([ServerTokens(None, "<eos>after")])) == ""  # nothing past the end


def test_the_server_text_of_tokens_sent_only_by_count_is_kept_when_the_last_is_the_end_token():
    events = assemble([ServerTokens([97], "a", predicted=1), ServerTokens([EOS], "b", predicted=3)])
    assert "".join(e.text for e in events) == "ab" and events[-1].finish_reason == "stop" and len(events) == 3


# -- 7. non-finite logprobs ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    '{"choices":[{"text":"x","logprobs":{"tokens":["token_id:87"],"token_logprobs":[NaN]}}]}',
    '{"choices":[{"text":"x","logprobs":{"tokens":["token_id:87"],"token_logprobs":[-0.1],"top_logprobs":[{"token_id:88":Infinity}]}}]}',
])
def test_a_nan_or_positive_infinite_logprob_is_a_protocol_error(raw):
    with pytest.raises(ProtocolError):
        OC.parse(json.loads(raw))
    with pytest.raises(ProtocolError):
        LS.parse({"content": "x", "tokens": [87], "completion_probabilities": [{"logprob": math.nan, "top_logprobs": []}]})


def test_a_logprob_of_minus_infinity_is_openais_minus_9999():
    parsed = OC.parse(json.loads('{"choices":[{"text":"x","logprobs":{"tokens":["token_id:87"],'
                                 '"token_logprobs":[-Infinity],"top_logprobs":[{"token_id:88":-Infinity}]}}]}'))
    assert parsed.logprobs[0].logprob == MIN_LOGPROB and parsed.logprobs[0].top[0].logprob == MIN_LOGPROB
    [event] = assemble([parsed], logprobs=1, max_tokens=1)
    assert event.logprob == MIN_LOGPROB and json.dumps(event.logprob, allow_nan=False) == "-9999.0"


# -- 8. cached prompt tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", -10**9, 1.5, True, None])
def test_a_cached_count_that_is_not_a_count_is_ignored(value):
    assert LS.parse({"content": "x", "tokens": [87], "timings": {"cache_n": value}}).cached is None
    assert LS.parse({"content": "x", "tokens": [87], "timings": "abc"}).cached is None
    usage = {"prompt_tokens_details": {"cached_tokens": value}}
    assert OC.parse({**chunk("x", [87]), "usage": usage}).cached is None


def test_a_cached_count_past_the_prompt_is_ignored():  # `assemble`'s prompt has 10 tokens
    assert assemble([ServerTokens([97], cached=4)])[0].cached_prompt_tokens == 4
    assert assemble([ServerTokens([97], cached=10**30)])[0].cached_prompt_tokens == 0
    assert assemble([ServerTokens([97], cached=11)])[0].cached_prompt_tokens == 0
    assert LS.parse({"content": "x", "tokens": [87], "timings": {"cache_n": 7}}).cached == 7


# -- 9. no replica healthy -----------------------------------------------------------------------


async def test_with_every_replica_failed_the_engine_stays_ready_and_says_no_replica_is_available():
    engine = await engine_over({"a": GOOD})
    engine.pool.mark_failed(engine.pool.replicas[0])  # as after a stream that broke mid-way
    assert engine.ready  # else the Coder layer answers "Model X is still loading"
    with pytest.raises(Overloaded) as refused:
        engine.generate([1, 2, 3], SamplingParams(max_tokens=5))
    await engine.close()
    assert refused.value.status_code == 503 and refused.value.headers["retry-after"] == "5"
    assert "replica" in refused.value.message and "loading" not in refused.value.message


# -- an error answer is read only so far -----------------------------------------------------------


async def test_only_the_start_of_a_huge_error_answer_is_read():
    sent = []

    async def huge_body():
        for _ in range(64):
            sent.append(2**20)
            yield b"x" * 2**20

    engine = await engine_over({"a": lambda: httpx.Response(500, content=huge_body())})
    events, error = await run(engine)
    assert isinstance(error, UpstreamError) and error.status_code == 502 and sum(sent) <= 2 * 2**20


# -- the replicas' context sizes ------------------------------------------------------------------


@pytest.mark.parametrize("told, used", [
    (2048, 2048), (1e400, 4096), (-5, 4096), (0, 4096), ("1024", 4096), (True, 4096), (2**40, 4096),
])
async def test_a_replicas_context_size_lowers_ours_only_when_it_is_a_plausible_whole_number(told, used):
    """1e400 (JSON allows it; Python reads inf) failed the engine's start; -5 shrank every request."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = b'{"data": [{"id": "m", "max_model_len": %s}]}' % (b"1e400" if told == 1e400 else json.dumps(told).encode())
        return httpx.Response(200, content=body)

    engine = RemoteCompletionEngine(["http://a:1/v1"], Path("family.gguf"), model="m", context_length=4096,
                                    verify_grammars=False, transport=httpx.MockTransport(handle))
    engine.tokenizer = LoadedByteTokenizer()
    await engine.start()
    await engine.close()
    assert engine.info.context_length == used
