"""Forwards OpenAI-level requests to a pool of OpenAI-compatible servers (vLLM, SGLang,
llama-server, another coderapi): least-outstanding routing, failover before the first byte."""

from __future__ import annotations

import logging
from contextlib import aclosing, asynccontextmanager, nullcontext
from typing import AsyncIterator, Callable, Hashable, TypeVar

import aiohttp
import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import to_json

from coderapi.backends.base import ChatAnswer, CompletionAnswer, RequestTally
from coderapi.backends.fair_pool import current_owner
from coderapi.backends.held_logprobs import check_held_logprobs
from coderapi.config import ModelSpec
from coderapi.backends.upstream.client import (
    MAX_ERROR_BODY, TRANSPORT_ERRORS, BodyTooLarge, LineTooLong, UpstreamClient, await_trailer, read_whole,
    release_or_close, sse_lines,
)
from coderapi.backends.upstream.streamed import StreamedText, answer_text
from coderapi.backends.upstream.token_count import TokenCounter
from coderapi.backends.upstream.usage import UsageCaps, UsageMeter
from coderapi.engines.remote.errors import (
    ProtocolError, bad_answer, error_for, json_object, status_fails_over, stream_failed, unreachable,
)
from coderapi.engines.base import EngineStats
from coderapi.engines.fair_gate import GatewayQueue
from coderapi.engines.shared_slots import SharedSlots
from coderapi.engines.remote.pool import Replica, ReplicaPool
from coderapi.errors import CoderapiError, retry_after_seconds
from coderapi.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.common import Usage
from coderapi.protocol.completions import Completion, CompletionRequest

log = logging.getLogger("coderapi.upstream")

AnswerT = TypeVar("AnswerT", bound=BaseModel)


# Logprob entries a replica's whole (not streamed) answer may carry: it is parsed and validated in one
# go on the event loop, 4-7 µs an entry here (16,380 entries 0.07 s, 131,061 entries 0.92 s, best of
# 5; a 16 MiB answer of them 4-5 s), and every other request waits meanwhile. A stream is parsed event
# by event and is not bounded.
WHOLE_ANSWER_LOGPROBS = 16_384


class UpstreamBackend:
    def __init__(
        self, spec: ModelSpec, counter: TokenCounter | None = None, max_waiting: int = 64,
        max_waiting_per_owner: int | None = None, shared_slots: SharedSlots | None = None,
    ) -> None:
        """With `spec.upstream_slots`, at most that many requests are at the replicas at once; up to
        `max_waiting` more (`max_waiting_per_owner` of one user's) wait here, users in turn, the one
        holding the fewest first (fair_gate.py), as the Coder layer's remote engine queues;
        `shared_slots`: those places counted across the gateways on one Redis (shared_slots.py)."""
        if not spec.upstream_urls:
            raise ValueError(f"model {spec.id}: backend 'upstream' needs upstream_urls")
        self.spec = spec
        self.served_model = spec.id
        headers = {"authorization": f"Bearer {spec.upstream_api_key}"} if spec.upstream_api_key else {}
        # Replicas are reached directly, as the forwarding client reaches them (no HTTP(S)_PROXY).
        self._health_client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(600.0, connect=5.0), trust_env=False)
        self._pool = ReplicaPool(spec.upstream_urls, self._health_client)
        self._client = UpstreamClient(spec.upstream_api_key, spec.upstream_connections_per_replica)
        self._counter = counter or TokenCounter(None)  # counts streams the upstream did not report
        slots = spec.upstream_slots
        self._queue = GatewayQueue(slots, max_waiting, max_waiting_per_owner, shared_slots) if slots > 0 else None

    @property
    def ready(self) -> bool:
        return self._pool.any_healthy

    @property
    def context_length(self) -> int:
        return self.spec.context_length

    def stats(self) -> EngineStats:
        """Requests at the replicas now and those waiting at the gateway for a place (/metrics)."""
        return EngineStats(running=self._pool.outstanding, waiting=self._queue.waiting if self._queue else 0)

    async def start(self) -> None:
        await self._client.start()
        await self._pool.start()

    async def close(self) -> None:
        await self._pool.close()
        await self._client.close()
        await self._health_client.aclose()
        self._counter.close()
        if self._queue is not None:
            await self._queue.close()

    def _body(self, request: BaseModel) -> bytes:
        body = request.model_dump(mode="json", exclude_none=True, by_alias=True)
        body["model"] = self.spec.upstream_model or self.spec.id
        # An upstream's own default budget may be the whole context: send the one that admission
        # reserved money for, so the request cannot cost more than was held.
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = self.spec.generation.max_tokens
        if body.get("stream"):
            body["stream_options"] = {"include_usage": True}  # usage is metered here either way
        return to_json(body)

    async def _try(self, replica: Replica, path: str, body: bytes) -> aiohttp.ClientResponse | CoderapiError:
        """One replica's answer (a 2xx, body unread), or the error to fail over on; client errors raise."""
        try:
            response = await self._client.post(replica.base_url + path, body)
        except TRANSPORT_ERRORS as exc:
            self._pool.mark_failed(replica)
            return unreachable(replica.base_url, exc)
        if _succeeded(response.status):
            return response
        error = error_for(response.status, await _error_body(response), _retry_after(response), replica.base_url)
        if _redirected(response.status):  # not followed: a replica that redirects is misconfigured, another may answer
            self._pool.mark_failed(replica)
            return error
        if not status_fails_over(response.status):
            raise error
        if response.status >= 500:
            self._pool.mark_failed(replica)
        return error

    async def _answer(self, replica: Replica, path: str, body: bytes, whole: bool):
        """`_try`'s answer; with `whole`, its whole body instead (a body cut short fails over too)."""
        answer = await self._try(replica, path, body)
        if not whole or isinstance(answer, CoderapiError):
            return answer
        try:
            return await read_whole(answer)
        except TRANSPORT_ERRORS as exc:
            self._pool.mark_failed(replica)
            return unreachable(replica.base_url, exc)
        except BodyTooLarge as exc:
            raise bad_answer(replica.base_url, exc) from exc

    async def _whole(self, path: str, body: bytes, answer_type: type[BaseModel]) -> tuple[BaseModel, object]:
        """The first whole answer of a replica, tried in order, validated: (the answer, its raw `usage`)."""
        async with self._opened(path, body, whole=True) as (content, replica):
            data = _json_object(content, replica.base_url)
            usage = data.pop("usage", None)
            # Validated without the upstream's usage, which is read on its own (see `UsageMeter`).
            result = _validated(answer_type, {**data, "usage": _NO_USAGE}, replica.base_url, bad_answer)
            return result, usage

    @asynccontextmanager
    async def _opened(self, path: str, body: bytes, *, whole: bool = False) -> AsyncIterator[tuple]:
        """Tries replicas in order until one answers; the replica stays leased while the block runs.
        Yields (the response, body unread, or with `whole` the body's bytes; the replica)."""
        last: CoderapiError | None = None
        for replica in self._pool.order():
            with self._pool.lease(replica):
                answer = await self._answer(replica, path, body, whole)
                if isinstance(answer, CoderapiError):
                    last = answer
                    continue
                try:
                    yield answer, replica
                finally:
                    if not whole:
                        release_or_close(answer)
                return
        raise last or self._pool.none_left()

    async def _chunks(self, path: str, body: bytes, meter: UsageMeter, chunk_type: type[BaseModel], include_usage: bool) -> AsyncIterator:
        """The stream, opened at the first iteration (services waits for the first chunk, so an
        error before any output is still a plain HTTP error)."""
        streamed = StreamedText(meter.caps.streamed_chars, meter.caps.streamed_bytes)
        opened = False
        try:
            async with self._opened(path, body) as (response, replica):
                opened = True
                relayed = False
                try:
                    async for chunk in self._relay(response, replica.base_url, meter, chunk_type, include_usage, streamed):
                        relayed = True
                        yield chunk
                except (*TRANSPORT_ERRORS, LineTooLong) as exc:  # the replica died or the connection broke mid-stream
                    self._pool.mark_failed(replica)
                    raise stream_failed(replica.base_url, repr(exc)) from exc
                if not relayed:  # no event at all (a JSON body, only [DONE]): not an answer
                    raise stream_failed(replica.base_url, "a stream without a chunk to relay")
        finally:
            if opened and not streamed.reported:  # cut short, or no usable usage sent: count it here, before recording
                meter.tally.count_at_end(lambda: meter.count_locally(None if streamed.over else streamed.text()))

    async def _relay(self, response, url: str, meter: UsageMeter, chunk_type, include_usage: bool, streamed: StreamedText) -> AsyncIterator:
        async for line in sse_lines(response):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                await await_trailer(response)
                break
            data = _event_object(payload, url)
            usage = data.pop("usage", None)
            chunk = _validated(chunk_type, data, url, stream_failed)
            if not streamed.add(chunk, len(payload)):
                async for last in self._over_budget(chunk, meter, streamed, include_usage, url):
                    yield last
                return
            chunk.model = self.served_model
            if chunk.choices:
                meter.tally.mark_first_token()
            if usage is not None:
                chunk.usage = await _streamed_usage(usage, meter, streamed)
                if not include_usage:
                    if not chunk.choices:
                        continue
                    chunk.usage = None
            yield chunk

    async def _over_budget(self, last, meter: UsageMeter, streamed: StreamedText, include_usage: bool, url: str) -> AsyncIterator:
        """A stream past its budget ends here, as max_tokens would end it: its open choices finish
        with "length" (the upstream ignored the budget the gateway sent, and holds money for),
        billed at that budget. Not an error: the client asked for this much and got it."""
        log.warning("upstream %s streamed past the request's budget (%d tokens); ended with \"length\"",
                    url, meter.caps.completion)
        meter.tally.set_finish_reason("length")
        ended = sorted({*streamed.unfinished, *(choice.index for choice in last.choices)})
        if ended:
            yield _closing_chunk(last, self.served_model, [_length_choice(last, i) for i in ended])
        if include_usage:
            await meter.count_locally(None)
            streamed.reported = True
            yield _closing_chunk(last, self.served_model, [], meter.usage())

    async def chat(self, request: ChatCompletionRequest, tally: RequestTally) -> ChatAnswer:
        return await self._forward("/chat/completions", request, tally, ChatCompletion, ChatCompletionChunk)

    async def complete(self, request: CompletionRequest, tally: RequestTally) -> CompletionAnswer:
        return await self._forward("/completions", request, tally, Completion, Completion)

    async def _forward(self, path: str, request, tally: RequestTally, answer_type, chunk_type):
        body = self._body(request)
        meter = UsageMeter(request, tally, UsageCaps.of(request, self.spec), self._counter)
        owner = current_owner()  # the stream is read outside the request's `working_for`: taken now
        if self._queue is not None:
            self._queue.check(owner)  # refused now, as an HTTP error (counted once it waits)
        if request.stream:
            chunks = self._chunks(path, body, meter, chunk_type, request.wants_usage)
            return chunks if self._queue is None else self._in_turn(owner, chunks)
        # A whole answer is parsed at once on the event loop: bounded tighter than the Coder layer's
        # held answers, whose entries are built one token at a time (see WHOLE_ANSWER_LOGPROBS).
        top, param = _logprob_alternatives(request)
        check_held_logprobs(
            choices=1, budget=meter.caps.completion, top=top, param=param, streamed=False,
            limit=min(self.spec.max_answer_logprobs, WHOLE_ANSWER_LOGPROBS),
        )
        async with self._queue.place(owner) if self._queue else nullcontext():
            result, usage = await self._whole(path, body, answer_type)
        tally.mark_first_token()
        return await self._finish(result, usage, meter)

    async def _in_turn(self, owner: Hashable | None, chunks: AsyncIterator) -> AsyncIterator:
        """`chunks` once a place is free; the place is held until the stream ends or is closed."""
        async with self._queue.place(owner), aclosing(chunks) as stream:
            async for chunk in stream:
                yield chunk

    async def _finish(self, result, usage, meter: UsageMeter):
        result.model = self.served_model
        if not meter.reported(usage):  # an upstream that reports no (usable) usage is counted here
            await meter.count_locally(answer_text(result))
        result.usage = meter.usage()  # what is billed, never the upstream's claim as such
        meter.tally.set_finish_reason(result.choices[0].finish_reason if result.choices else None)
        return result

    async def tokenize(self, text: str) -> list[int]:
        answer = await self._send_root("/tokenize", {"model": self.spec.upstream_model or self.spec.id, "prompt": text}, _Tokenized)
        return answer.tokens

    async def tokenize_messages(self, messages: list, *, add_generation_prompt: bool = True) -> list[int]:
        body = {
            "model": self.spec.upstream_model or self.spec.id,
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in messages],
            "add_generation_prompt": add_generation_prompt,
        }
        return (await self._send_root("/tokenize", body, _Tokenized)).tokens

    async def detokenize(self, tokens: list[int]) -> str:
        body = {"model": self.spec.upstream_model or self.spec.id, "tokens": tokens}
        return (await self._send_root("/detokenize", body, _Detokenized)).prompt

    async def _send_root(self, path: str, body: dict, answer_type: type[AnswerT]) -> AnswerT:
        """vLLM and coderapi serve /tokenize beside /v1, not under it."""
        for replica in self._pool.order():
            try:
                response = await self._client.post(replica.root + path, to_json(body))
                content = await read_whole(response, None if _succeeded(response.status) else MAX_ERROR_BODY)
            except TRANSPORT_ERRORS:
                self._pool.mark_failed(replica)
                continue
            except BodyTooLarge as exc:
                raise bad_answer(replica.root, exc) from exc
            if not _succeeded(response.status):
                raise error_for(response.status, content, _retry_after(response), replica.root)
            return _validated(answer_type, _json_object(content, replica.root), replica.root, bad_answer)
        raise self._pool.none_left()


class _Tokenized(BaseModel):
    model_config = ConfigDict(strict=True)

    tokens: list[int]


class _Detokenized(BaseModel):
    model_config = ConfigDict(strict=True)

    prompt: str


_NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}  # a stand-in while validating


def _succeeded(status: int) -> bool:
    return 200 <= status < 300


def _redirected(status: int) -> bool:
    return 300 <= status < 400


def _retry_after(response: aiohttp.ClientResponse) -> str | None:
    """The replica's Retry-After as whole seconds within bounds (its text may be anything)."""
    value = response.headers.get("retry-after")
    return None if value is None else str(retry_after_seconds(value))


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    """An error answer's body, only logged: one cut short or past MAX_ERROR_BODY reads as empty."""
    try:
        return await read_whole(response, MAX_ERROR_BODY)
    except (*TRANSPORT_ERRORS, BodyTooLarge):
        return b""


def _json_object(content: bytes, url: str) -> dict:
    """A whole answer's JSON object; anything else (not JSON, a list, a number) is a 502."""
    try:
        return json_object(content)
    except ProtocolError as exc:
        raise bad_answer(url, exc) from exc


def _logprob_alternatives(request) -> tuple[int | None, str]:
    """(alternatives per token, None without logprobs; the parameter that asks for them)."""
    if isinstance(request, ChatCompletionRequest):
        top = (request.top_logprobs or 0) if request.logprobs else None
        return top, "top_logprobs" if request.top_logprobs else "logprobs"
    return request.logprobs, "logprobs"


def _event_object(payload: bytes, url: str) -> dict:
    """A stream event's JSON object; anything else (not JSON, a list, a number, an error) ends the stream."""
    try:
        data = json_object(payload)
    except ProtocolError as exc:
        raise stream_failed(url, exc) from exc
    if "error" in data:
        raise stream_failed(url, data["error"])
    return data


def _validated(model: type[AnswerT], data: dict, url: str, failure: Callable[[str, object], CoderapiError]) -> AnswerT:
    """`data` as the wire model the gateway relays; an answer of another shape is the replica's
    fault (`failure`: a 502 before the first byte, the stream's error event after it)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise failure(url, exc) from exc


async def _streamed_usage(usage, meter: UsageMeter, streamed: StreamedText) -> Usage:
    """A usage chunk's usage as billed: the upstream's when usable, else counted here now."""
    if not meter.reported(usage):
        await meter.count_locally(streamed.text())
    streamed.reported = True
    return meter.usage()


def _length_choice(last, index: int) -> dict:
    if isinstance(last, ChatCompletionChunk):
        return {"index": index, "delta": {}, "finish_reason": "length"}
    return {"index": index, "text": "", "finish_reason": "length"}


def _closing_chunk(last, model: str, choices: list[dict], usage: Usage | None = None):
    """A chunk the gateway adds to end a stream, shaped like the upstream's `last` one."""
    chunk = type(last).model_validate({"id": last.id, "created": last.created, "model": model, "choices": choices})
    chunk.usage = usage
    return chunk
