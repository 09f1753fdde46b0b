"""Forwards OpenAI-level requests to a pool of OpenAI-compatible servers (vLLM, SGLang,
llama-server, another coderapi): least-outstanding routing, failover before the first byte."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
import httpx
from pydantic import BaseModel
from pydantic_core import from_json, to_json

from coderapi.backends.base import ChatAnswer, CompletionAnswer, RequestTally
from coderapi.config import ModelSpec
from coderapi.backends.upstream.client import (
    TRANSPORT_ERRORS, LineTooLong, UpstreamClient, await_trailer, read_whole, release_or_close, sse_lines,
)
from coderapi.backends.upstream.streamed import StreamedText, answer_text
from coderapi.backends.upstream.token_count import TokenCounter
from coderapi.engines.remote.errors import bad_answer, error_for, status_fails_over, stream_failed, unreachable
from coderapi.engines.remote.pool import Replica, ReplicaPool
from coderapi.errors import CoderapiError
from coderapi.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.common import Usage
from coderapi.protocol.completions import Completion, CompletionRequest


class UpstreamBackend:
    def __init__(self, spec: ModelSpec, counter: TokenCounter | None = None) -> None:
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

    @property
    def ready(self) -> bool:
        return self._pool.any_healthy

    @property
    def context_length(self) -> int:
        return self.spec.context_length

    async def start(self) -> None:
        await self._client.start()
        await self._pool.start()

    async def close(self) -> None:
        await self._pool.close()
        await self._client.close()
        await self._health_client.aclose()
        self._counter.close()

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
        """One replica's answer (status < 400, body unread), or the error to fail over on; client errors raise."""
        try:
            response = await self._client.post(replica.base_url + path, body)
        except TRANSPORT_ERRORS as exc:
            self._pool.mark_failed(replica)
            return unreachable(replica.base_url, exc)
        if response.status < 400:
            return response
        try:
            content = await read_whole(response)
        except TRANSPORT_ERRORS:
            content = b""
        error = error_for(response.status, content, response.headers.get("retry-after"), replica.base_url)
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

    async def _post(self, path: str, body: bytes) -> dict:
        """The first whole answer of a replica, tried in order."""
        async with self._opened(path, body, whole=True) as (content, replica):
            try:
                return from_json(content)
            except ValueError as exc:
                raise bad_answer(replica.base_url, exc) from exc

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

    async def _chunks(self, path: str, request, body: bytes, tally: RequestTally, chunk_type: type[BaseModel], include_usage: bool) -> AsyncIterator:
        """The stream, opened at the first iteration (services waits for the first chunk, so an
        error before any output is still a plain HTTP error)."""
        streamed = StreamedText()
        opened = False
        try:
            async with self._opened(path, body) as (response, replica):
                opened = True
                try:
                    async for chunk in self._relay(response, replica, tally, chunk_type, include_usage, streamed):
                        yield chunk
                except (*TRANSPORT_ERRORS, LineTooLong) as exc:  # the replica died or the connection broke mid-stream
                    self._pool.mark_failed(replica)
                    raise stream_failed(replica.base_url, repr(exc)) from exc
        finally:
            if opened and not streamed.reported:  # cut short, or no usage sent: count it here, before recording
                tally.count_at_end(lambda: self._count_locally(request, streamed.text(), tally))

    async def _relay(self, response, replica, tally, chunk_type, include_usage, streamed: StreamedText) -> AsyncIterator:
        async for line in sse_lines(response):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                await await_trailer(response)
                break
            try:
                data = from_json(payload)
            except ValueError as exc:
                raise stream_failed(replica.base_url, f"an event that is not JSON: {exc}") from exc
            if "error" in data:
                raise stream_failed(replica.base_url, data["error"])
            chunk = chunk_type.model_validate(data)
            streamed.add(chunk)
            chunk.model = self.served_model
            if chunk.choices:
                tally.mark_first_token()
            if chunk.usage is not None:
                self._count(tally, chunk.usage)
                streamed.reported = True
                if not include_usage:
                    if not chunk.choices:
                        continue
                    chunk.usage = None
            yield chunk

    async def _count_locally(self, request, completion_text: str, tally: RequestTally) -> None:
        prompt_tokens = await self._counter.count_prompt(request)
        tally.set_counts(prompt_tokens, await self._counter.count_text(completion_text))

    @staticmethod
    def _count(tally: RequestTally, usage: Usage) -> None:
        details = usage.prompt_tokens_details
        tally.set_counts(usage.prompt_tokens, usage.completion_tokens, details.cached_tokens if details else 0)

    async def chat(self, request: ChatCompletionRequest, tally: RequestTally) -> ChatAnswer:
        return await self._forward("/chat/completions", request, tally, ChatCompletion, ChatCompletionChunk)

    async def complete(self, request: CompletionRequest, tally: RequestTally) -> CompletionAnswer:
        return await self._forward("/completions", request, tally, Completion, Completion)

    async def _forward(self, path: str, request, tally: RequestTally, answer_type, chunk_type):
        body = self._body(request)
        if request.stream:
            return self._chunks(path, request, body, tally, chunk_type, request.wants_usage)
        data = await self._post(path, body)
        tally.mark_first_token()
        return await self._finish(request, answer_type, data, tally)

    async def _finish(self, request, answer_type: type[BaseModel], data: dict, tally: RequestTally):
        reported = isinstance(data, dict) and data.get("usage") is not None
        if not reported:  # an upstream that reports no usage is counted here
            data = {**data, "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
        result = answer_type.model_validate(data)
        result.model = self.served_model
        if reported:
            self._count(tally, result.usage)
        else:
            await self._count_locally(request, answer_text(result), tally)
            result.usage = tally.usage()
        tally.set_finish_reason(result.choices[0].finish_reason if result.choices else None)
        return result

    async def tokenize(self, text: str) -> list[int]:
        answer = await self._send_root("/tokenize", {"model": self.spec.upstream_model or self.spec.id, "prompt": text})
        return answer["tokens"]

    async def tokenize_messages(self, messages: list, *, add_generation_prompt: bool = True) -> list[int]:
        body = {
            "model": self.spec.upstream_model or self.spec.id,
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in messages],
            "add_generation_prompt": add_generation_prompt,
        }
        return (await self._send_root("/tokenize", body))["tokens"]

    async def detokenize(self, tokens: list[int]) -> str:
        answer = await self._send_root("/detokenize", {"model": self.spec.upstream_model or self.spec.id, "tokens": tokens})
        return answer["prompt"]

    async def _send_root(self, path: str, body: dict) -> dict:
        """vLLM and coderapi serve /tokenize beside /v1, not under it."""
        for replica in self._pool.order():
            try:
                response = await self._client.post(replica.root + path, to_json(body))
                content = await read_whole(response)
            except TRANSPORT_ERRORS:
                self._pool.mark_failed(replica)
                continue
            if response.status >= 400:
                raise error_for(response.status, content, response.headers.get("retry-after"), replica.root)
            return from_json(content)
        raise self._pool.none_left()
