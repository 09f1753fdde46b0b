"""Forwards OpenAI-level requests to a pool of OpenAI-compatible servers (vLLM, SGLang,
llama-server, another coderapi): least-outstanding routing, failover before the first byte."""

from __future__ import annotations

import json
from typing import AsyncIterator

import httpx
from pydantic import BaseModel

from coderapi.backends.base import ChatAnswer, CompletionAnswer, RequestTally
from coderapi.backends.upstream.pool import Replica, ReplicaPool
from coderapi.config import ModelSpec
from coderapi.errors import CoderapiError, InvalidRequest, NotFound, Overloaded, UpstreamError
from coderapi.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.common import Usage
from coderapi.protocol.completions import Completion, CompletionRequest

# Upstream client errors keep their meaning; its auth failures are ours, not the caller's.
_CLIENT_ERRORS: dict[int, type[CoderapiError]] = {400: InvalidRequest, 404: NotFound, 413: InvalidRequest, 422: InvalidRequest}


def _error_from(response: httpx.Response) -> CoderapiError:
    try:
        body = response.json().get("error") or {}
    except (ValueError, AttributeError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    message = message or f"upstream answered {response.status_code}"
    if response.status_code == 429 or response.status_code == 503:
        return Overloaded(f"Upstream is busy: {message}", retry_after=float(response.headers.get("retry-after", 1)))
    error_class = _CLIENT_ERRORS.get(response.status_code, UpstreamError)
    return error_class(message, param=body.get("param") if isinstance(body, dict) else None)


class UpstreamBackend:
    def __init__(self, spec: ModelSpec) -> None:
        if not spec.upstream_urls:
            raise ValueError(f"model {spec.id}: backend 'upstream' needs upstream_urls")
        self.spec = spec
        self.served_model = spec.id
        headers = {"authorization": f"Bearer {spec.upstream_api_key}"} if spec.upstream_api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(600.0, connect=5.0))
        self._pool = ReplicaPool(spec.upstream_urls, self._client)

    @property
    def ready(self) -> bool:
        return self._pool.any_healthy

    @property
    def context_length(self) -> int:
        return self.spec.context_length

    async def start(self) -> None:
        await self._pool.start()

    async def close(self) -> None:
        await self._pool.close()
        await self._client.aclose()

    def _body(self, request: BaseModel) -> dict:
        body = request.model_dump(mode="json", exclude_none=True, by_alias=True)
        body["model"] = self.spec.upstream_model or self.spec.id
        if body.get("stream"):
            body["stream_options"] = {"include_usage": True}  # usage is metered here either way
        return body

    async def _send(self, path: str, body: dict, *, stream: bool) -> tuple[httpx.Response, Replica]:
        """Tries replicas in order until one answers; client errors are not retried."""
        last: CoderapiError | None = None
        for replica in self._pool.order():
            replica.outstanding += 1
            try:
                request = self._client.build_request("POST", replica.base_url + path, json=body)
                response = await self._client.send(request, stream=stream)
            except httpx.TransportError as exc:
                replica.outstanding -= 1
                self._pool.mark_failed(replica)
                last = UpstreamError(f"upstream {replica.base_url} unreachable: {type(exc).__name__}")
                continue
            if response.status_code < 400:
                return response, replica
            if stream:
                await response.aread()
            await response.aclose()
            replica.outstanding -= 1
            error = _error_from(response)
            if response.status_code < 500 and response.status_code != 429:
                raise error
            last = error
            if response.status_code >= 500:
                self._pool.mark_failed(replica)
        raise last or self._pool.none_left()

    async def _post(self, path: str, body: dict) -> dict:
        response, replica = await self._send(path, body, stream=False)
        replica.outstanding -= 1
        return response.json()

    async def _stream(self, path: str, body: dict, tally: RequestTally, chunk_type: type[BaseModel], include_usage: bool) -> AsyncIterator:
        response, replica = await self._send(path, body, stream=True)
        return self._chunks(response, replica, tally, chunk_type, include_usage)

    async def _chunks(self, response, replica, tally, chunk_type, include_usage) -> AsyncIterator:
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                data = json.loads(payload)
                if "error" in data:
                    raise UpstreamError(str(data["error"].get("message", "upstream stream failed")))
                chunk = chunk_type.model_validate(data)
                chunk.model = self.served_model
                if chunk.choices:
                    tally.mark_first_token()
                if chunk.usage is not None:
                    self._count(tally, chunk.usage)
                    if not include_usage:
                        if not chunk.choices:
                            continue
                        chunk.usage = None
                yield chunk
        finally:
            replica.outstanding -= 1
            await response.aclose()

    @staticmethod
    def _count(tally: RequestTally, usage: Usage) -> None:
        tally.prompt_tokens = usage.prompt_tokens
        tally.completion_tokens = usage.completion_tokens
        details = usage.prompt_tokens_details
        tally.cached_tokens = details.cached_tokens if details else 0

    async def chat(self, request: ChatCompletionRequest, tally: RequestTally) -> ChatAnswer:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = self._body(request)
        if request.stream:
            return await self._stream("/chat/completions", body, tally, ChatCompletionChunk, include_usage)
        result = ChatCompletion.model_validate(await self._post("/chat/completions", body))
        tally.mark_first_token()
        return self._finish(result, tally)

    async def complete(self, request: CompletionRequest, tally: RequestTally) -> CompletionAnswer:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        body = self._body(request)
        if request.stream:
            return await self._stream("/completions", body, tally, Completion, include_usage)
        result = Completion.model_validate(await self._post("/completions", body))
        tally.mark_first_token()
        return self._finish(result, tally)

    def _finish(self, result, tally: RequestTally):
        result.model = self.served_model
        if result.usage is not None:
            self._count(tally, result.usage)
        tally.finish_reason = result.choices[0].finish_reason if result.choices else None
        return result

    async def tokenize(self, text: str) -> list[int]:
        response, _ = await self._send_root("/tokenize", {"model": self.spec.upstream_model or self.spec.id, "prompt": text})
        return response.json()["tokens"]

    async def tokenize_messages(self, messages: list, *, add_generation_prompt: bool = True) -> list[int]:
        body = {
            "model": self.spec.upstream_model or self.spec.id,
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in messages],
            "add_generation_prompt": add_generation_prompt,
        }
        response, _ = await self._send_root("/tokenize", body)
        return response.json()["tokens"]

    async def detokenize(self, tokens: list[int]) -> str:
        response, _ = await self._send_root("/detokenize", {"model": self.spec.upstream_model or self.spec.id, "tokens": tokens})
        return response.json()["prompt"]

    async def _send_root(self, path: str, body: dict) -> tuple[httpx.Response, Replica]:
        """vLLM and coderapi serve /tokenize beside /v1, not under it."""
        for replica in self._pool.order():
            try:
                response = await self._client.post(replica.root + path, json=body)
            except httpx.TransportError:
                self._pool.mark_failed(replica)
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response, replica
        raise self._pool.none_left()
