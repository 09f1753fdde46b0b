"""`RemoteCompletionEngine`: the Engine contract over a pool of raw-completion servers.

The Coder layer (backends/coder) renders, tokenizes and builds grammars here, on the gateway, then
this engine sends the prompt's token ids and the sampling fields (GBNF grammar included) to a
replica's raw completion endpoint (llama-server's /completion, or /v1/completions of vLLM or
another coderapi; dialects.py) and turns its stream back into one TokenEvent per token
(assembler.py). Prompt and completion are counted here by the same tokenizer, so usage needs
nothing from the server, and a stream cut short is metered by what was received.

Routing: least outstanding among healthy replicas (pool.py). A replica that cannot be reached,
fails (5xx), is busy (429), breaks or answers what its API does not allow (an event that is not
JSON, a field of the wrong type, a token id outside the vocabulary, a line over MAX_SSE_LINE)
before its first token is passed over for the next one; after the first token, a broken stream
ends with `upstream_stream_error`. While no replica is healthy, requests are refused with 503.
Closing the iterator (the client hung up) closes the HTTP stream at once, so the replica stops
generating.

Grammars are parsed by the real llama.cpp in a local sandbox process before they are sent (the
same check as the in-process engine's), so a grammar that would crash a llama-server replica is a
400 here instead.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing, nullcontext
from pathlib import Path
from typing import AsyncIterator

import httpx
from pydantic_core import from_json  # its nesting limit is a ValueError, not json's RecursionError

from coderapi.engines.base import EngineInfo, EngineStats, SamplingParams, TokenEvent
from coderapi.engines.fair_gate import GatewayQueue
from coderapi.engines.shared_slots import SharedSlots
from coderapi.engines.remote.assembler import TokenAssembler
from coderapi.engines.remote.dialects import dialect
from coderapi.engines.remote.errors import (
    ProtocolError, bad_answer, error_for, json_object, status_fails_over, stream_failed, unreachable,
)
from coderapi.engines.remote.lines import sse_lines
from coderapi.engines.remote.pool import Replica, ReplicaPool
from coderapi.engines.remote.tokenizer import FamilyTokenizer
from coderapi.engines.request_checks import check_request
from coderapi.errors import CoderapiError, ModelNotReady

log = logging.getLogger("coderapi.upstream")

_ERROR_BODY = 64 * 1024  # bytes of a replica's error answer read: its start is all that is parsed or logged


class _NoTokenYet(Exception):
    """This replica failed before its first token: the next one may be tried."""

    def __init__(self, error: CoderapiError) -> None:
        self.error = error


class RemoteCompletionEngine:
    def __init__(
        self,
        urls: list[str],
        gguf_path: Path,
        *,
        api: str = "openai-completions",
        model: str | None = None,
        api_key: str | None = None,
        context_length: int = 8192,
        check_interval: float = 5.0,
        verify_grammars: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        slots: int = 0,
        max_waiting: int = 64,
        max_waiting_per_owner: int | None = None,
        shared_slots: SharedSlots | None = None,
    ) -> None:
        """`urls`: the replicas' base URLs (http://host:port/v1; llama-server's root works too).
        `gguf_path`: a local GGUF of the same tokenizer family (vocabulary only is loaded).
        `model`: the name the servers expect in `model` (openai-completions).
        `transport`: httpx's (tests: a MockTransport).
        `slots`: sequences the replicas decode at once, all together; 0 sends every request at once.
        Otherwise at most that many are sent, and `max_waiting` more (`max_waiting_per_owner` of one
        owner's) wait here, owners in turn (fair_gate.py, capacity.py). `shared_slots`: those places
        counted across the gateways on one Redis (shared_slots.py)."""
        if not urls:
            raise ValueError("the remote engine needs at least one replica URL")
        self._dialect = dialect(api)
        self._model = model
        self.tokenizer = FamilyTokenizer(gguf_path)
        # identity: the stream is read raw and its lines capped (lines.py), so nothing may inflate
        headers = {"accept-encoding": "identity"} | ({"authorization": f"Bearer {api_key}"} if api_key else {})
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(600.0, connect=5.0), transport=transport)
        self._pool = ReplicaPool(urls, self._client, check_interval, health_path=self._dialect.health_path)
        self._context_length = context_length
        self.info = EngineInfo(
            model_path=", ".join(urls), context_length=context_length, vocab_size=0,
            chat_template=None, bos_token="", eos_token="",
        )
        self._sandbox = None
        if verify_grammars:
            from coderapi.engines.llama_cpp.grammar_sandbox import GrammarSandbox

            self._sandbox = GrammarSandbox(Path(gguf_path))
        self._ready = False
        self._queue = GatewayQueue(slots, max_waiting, max_waiting_per_owner, shared_slots) if slots > 0 else None

    @property
    def ready(self) -> bool:
        """Started (the tokenizer loaded). Whether a replica answers is each request's matter:
        `generate` refuses with 503 while none is healthy, saying so, where a not-ready engine's
        refusal would say the model is still loading."""
        return self._ready

    @property
    def pool(self) -> ReplicaPool:
        return self._pool

    async def start(self) -> None:
        await asyncio.to_thread(self.tokenizer.load)
        tok = self.tokenizer
        await self._pool.start()
        context = min([self._context_length, *await self._server_contexts()])
        self.info = EngineInfo(
            model_path=self.info.model_path, context_length=context, vocab_size=tok.vocab_size,
            chat_template=tok.chat_template, bos_token=tok.bos_token, eos_token=tok.eos_token, metadata=tok.metadata,
            control_texts=tok.control_texts,
        )
        if self._sandbox is not None:
            await asyncio.to_thread(self._sandbox.start)
        self._ready = True

    async def _server_contexts(self) -> list[int]:
        """The replicas' own context per sequence (llama-server: /props; vLLM: `max_model_len` in
        /v1/models), so no request is admitted that a server would cut short or refuse."""
        sizes = []
        for replica in self._pool.replicas:
            try:
                if self._dialect.name == "llama-server":
                    props = from_json((await self._client.get(replica.root + "/props", timeout=3.0)).content)
                    sizes.append(props["default_generation_settings"]["n_ctx"])
                    continue
                listed = from_json((await self._client.get(replica.base_url + "/models", timeout=3.0)).content)["data"]
                sizes += [m["max_model_len"] for m in listed if m.get("id") == self._model and m.get("max_model_len")]
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
                continue
        sizes = [s for s in sizes if _plausible_context(s)]
        if sizes and min(sizes) < self._context_length:
            log.warning("upstream sequences hold %d tokens: context_length lowered from %d", min(sizes), self._context_length)
        return sizes

    async def close(self) -> None:
        self._ready = False
        await self._pool.close()
        await self._client.aclose()
        if self._queue is not None:
            await self._queue.close()
        if self._sandbox is not None:
            await asyncio.to_thread(self._sandbox.close)

    def verify_grammar(self, grammar: str) -> str | None:
        """None when llama.cpp parses `grammar` (in the local sandbox process), else why not. Blocks."""
        return self._sandbox.verify(grammar) if self._sandbox is not None else None

    # -- vocabulary (local) ---------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        return self.tokenizer.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, token_ids: list[int]) -> str:
        return self.tokenizer.detokenize(token_ids)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.token_text(token_id)

    def stats(self) -> EngineStats:
        return EngineStats(running=self._pool.outstanding, waiting=self._queue.waiting if self._queue else 0)

    # -- generation -----------------------------------------------------------------------------

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        """Validate now (errors raise here, before any request is sent) and return the stream."""
        if not self._ready:
            raise ModelNotReady("The model's tokenizer is still loading.", retry_after=5)
        if not self._pool.any_healthy:
            raise self._pool.none_left()  # 503 with Retry-After until a health check passes
        self._validate(prompt_ids, params)
        if self._queue is not None:
            self._queue.check(params.owner)
        return self._stream(list(prompt_ids), params)

    def _validate(self, prompt: list[int], params: SamplingParams) -> None:
        check_request(prompt, params, n_vocab=self.info.vocab_size, n_ctx=self.info.context_length)

    async def _stream(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        # aclosing: closing this stream closes the replica's at once (not when it is collected), and
        # before its place goes to the next request.
        place = self._queue.place(params.owner) if self._queue else nullcontext()
        async with place, aclosing(self._sent(prompt, params)) as sent:
            async for event in sent:
                yield event

    async def _sent(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        body = self._dialect.body(prompt, params, self._model)
        assembler = TokenAssembler(self.tokenizer, len(prompt), params, self.info.context_length)
        last: CoderapiError | None = None
        for replica in self._pool.order():
            with self._pool.lease(replica):
                try:
                    async with aclosing(self._from_replica(replica, body, assembler)) as events:
                        async for event in events:
                            yield event
                    return
                except _NoTokenYet as failed:
                    last = failed.error
        raise last or self._pool.none_left()

    async def _from_replica(self, replica: Replica, body: dict, assembler: TokenAssembler) -> AsyncIterator[TokenEvent]:
        url = self._dialect.url(replica.base_url, replica.root)
        try:
            async with self._client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    content, retry_after = await _error_body(response), response.headers.get("retry-after")
                    error = error_for(response.status_code, content, retry_after, url)
                    if not status_fails_over(response.status_code):
                        raise error
                    if response.status_code >= 500:
                        self._pool.mark_failed(replica)
                    raise _NoTokenYet(error)
                async for line in sse_lines(response.aiter_raw()):
                    for event in self._events(line, url, assembler):
                        yield event
                    if assembler.finished:
                        return
        except httpx.TransportError as exc:  # unreachable, or the connection broke
            self._pool.mark_failed(replica)
            if assembler.count == 0:
                raise _NoTokenYet(unreachable(url, exc)) from exc
            raise stream_failed(url, repr(exc)) from exc
        except ProtocolError as exc:  # a replica that answers what its API does not allow is failing
            self._pool.mark_failed(replica)
            if assembler.count == 0:
                raise _NoTokenYet(bad_answer(url, exc)) from exc
            raise stream_failed(url, exc) from exc
        if not assembler.finished:  # both dialects end a sequence with a finish of their own
            error = stream_failed(url, "the stream ended before the sequence did")
            raise _NoTokenYet(error) if assembler.count == 0 else error

    def _events(self, line: bytes, url: str, assembler: TokenAssembler) -> list[TokenEvent]:
        if not line.startswith(b"data:"):
            return []  # blank separators, SSE comments (pings)
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return []
        data = json_object(payload)
        if "error" in data:
            error = stream_failed(url, data["error"])
            raise _NoTokenYet(error) if assembler.count == 0 else error
        tokens = self._dialect.parse(data)
        return assembler.events(tokens) if tokens is not None else []


def _plausible_context(size) -> bool:
    """A replica's context size worth lowering ours to: a whole number a server could hold (its
    answer is not trusted: 1e400 or -5 would fail the start or shrink every request)."""
    return isinstance(size, int) and not isinstance(size, bool) and 16 <= size <= 1 << 31


async def _error_body(response: httpx.Response) -> bytes:
    """The start of an error answer, however long the replica says it is."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= _ERROR_BODY:
            break
    return bytes(body[:_ERROR_BODY])
