"""`LlamaCppEngine`: the asyncio face of the llama.cpp worker thread.

The event loop never calls into the llama context: `generate` puts a `Request` on the worker's
inbox and awaits the request's own asyncio queue, which the worker fills with
`loop.call_soon_threadsafe`. Closing the generator (``aclose()``, GeneratorExit, or the
consuming task being cancelled) flags the request; the worker frees its sequence before the
next decode step. Tokenization only reads the vocabulary and runs inline.

Finishing: an end-of-generation token (``llama_vocab_is_eog``, unless ``ignore_eos``) or one of
``stop_token_ids`` (always) ends the sequence with finish_reason "stop"; that token is reported
in a last TokenEvent with text "" and counts as a completion token (as in llama-server).
``max_tokens`` or a full context (prompt + completion = ``n_ctx_per_seq``) ends it with "length".
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator

from coderapi.engines.base import EngineInfo, EngineStats, SamplingParams, TokenEvent
from coderapi.engines.capacity import EngineCapacity
from coderapi.engines.request_checks import check_request
from coderapi.errors import ModelNotReady

from .grammar_sandbox import GrammarSandbox
from .sequences import Request
from .worker import STOP, Worker


class LlamaCppEngine:
    """Continuous batching over one llama context holding `n_parallel` sequences."""

    worker_class: type[Worker] = Worker  # the seam fault tests use: a Worker whose step raises

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx_per_seq: int = 8192,
        n_parallel: int = 8,
        n_threads: int | None = None,
        max_waiting: int = 64,
        max_waiting_per_owner: int | None = None,
        n_batch: int = 512,
        prompt_rows_while_decoding: int | None = None,
        ngram_speculation: bool = True,
        exact_speculation: bool = True,
        repack: bool = True,
        draft_gate: bool = True,
        huge_pages: bool = True,
    ) -> None:
        if n_ctx_per_seq < 16:
            raise ValueError("n_ctx_per_seq >= 16 required")
        if n_batch <= n_parallel:
            raise ValueError("n_batch must exceed n_parallel, or prompts could never be evaluated")
        if prompt_rows_while_decoding is not None and prompt_rows_while_decoding < 1:
            raise ValueError("prompt_rows_while_decoding >= 1 required, or prompts beside streams could never be evaluated")
        self.model_path = Path(model_path)
        self._n_ctx_per_seq = n_ctx_per_seq
        self._n_parallel = n_parallel
        self._n_threads = n_threads or os.cpu_count() or 1
        self._capacity = EngineCapacity(n_parallel, max_waiting, max_waiting_per_owner)
        self._n_batch = n_batch
        self._prompt_rows_while_decoding = prompt_rows_while_decoding
        self._speculation = {"ngram_speculation": ngram_speculation, "exact_speculation": exact_speculation,
                             "draft_gate": draft_gate}
        self._repack = repack
        self._huge_pages = huge_pages
        self.info = EngineInfo(
            model_path=str(self.model_path),
            context_length=n_ctx_per_seq,
            vocab_size=0,
            chat_template=None,
            bos_token="",
            eos_token="",
        )
        self._worker: Worker | None = None
        self._ready = False
        self.grammar_sandbox = GrammarSandbox(self.model_path)  # its helper process starts in start()

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Load the model and create the context on the worker thread; the loop stays free."""
        if self._worker is not None:
            return
        worker = self.worker_class(
            self.model_path,
            n_ctx_per_seq=self._n_ctx_per_seq,
            n_parallel=self._n_parallel,
            n_threads=self._n_threads,
            n_batch=self._n_batch,
            prompt_rows_while_decoding=self._prompt_rows_while_decoding,
            repack=self._repack,
            huge_pages=self._huge_pages,
            **self._speculation,
        )
        self._worker = worker
        worker.start()
        try:
            await asyncio.wrap_future(worker.ready)
        except BaseException:
            self._worker = None
            raise
        model = worker.model
        meta = worker.metadata
        self.info = EngineInfo(
            model_path=str(self.model_path),
            context_length=self._n_ctx_per_seq,
            vocab_size=model.n_vocab,
            chat_template=meta.get("tokenizer.chat_template"),
            bos_token=model.token_text(model.bos_id) if model.bos_id >= 0 else "",
            eos_token=model.token_text(model.eos_id) if model.eos_id >= 0 else "",
            metadata=meta,
            control_texts=await asyncio.to_thread(model.control_texts),  # reads the vocabulary only, as tokenize does
        )
        await asyncio.to_thread(self.grammar_sandbox.start)
        self._ready = True

    async def close(self) -> None:
        """Stop the worker (pending requests get ModelNotReady) and free the model."""
        self._ready = False
        await asyncio.to_thread(self.grammar_sandbox.close)
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.inbox.put(STOP)
        await asyncio.to_thread(worker.join)

    def verify_grammar(self, grammar: str) -> str | None:
        """None when llama.cpp parses `grammar` (in the sandbox process), else why not. Blocks."""
        return self.grammar_sandbox.verify(grammar)

    # -- vocabulary -----------------------------------------------------------------------------

    def _model(self):
        if not self._ready or self._worker is None:
            raise ModelNotReady("The model is still loading.")
        return self._worker.model

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        return self._model().tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, token_ids: list[int]) -> str:
        """Text of the tokens, special tokens rendered (the inverse of `tokenize`)."""
        return self._model().detokenize(list(token_ids), render_special=True)

    def token_text(self, token_id: int) -> str:
        return self._model().token_text(token_id)

    # -- generation -----------------------------------------------------------------------------

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        """Validate now (errors raise here, before any iteration) and return the stream."""
        self._validate(prompt_ids, params)
        self._capacity.check(params.owner)
        return self._stream(list(prompt_ids), params)

    def _validate(self, prompt: list[int], params: SamplingParams) -> None:
        check_request(prompt, params, n_vocab=self._model().n_vocab, n_ctx=self._n_ctx_per_seq)

    async def _stream(self, prompt: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        worker = self._worker
        if worker is None or not self._ready or not worker.is_alive():
            raise ModelNotReady("The model is not loaded.")
        owner, capacity = params.owner, self._capacity
        capacity.enter(owner)  # re-checked: several generators may have been created at once
        counted = True
        req = Request(prompt, params, asyncio.get_running_loop())
        try:
            worker.inbox.put(req)
            while True:
                item = await req.queue.get()
                req.taken += 1
                if isinstance(item, BaseException):
                    req.finished = True
                    raise item
                if item.finish_reason is not None:
                    req.finished = True
                    capacity.leave(owner)  # now, even if the consumer never closes us
                    counted = False
                    yield item
                    return
                yield item
        finally:
            if not req.finished:
                req.cancelled = True  # the worker frees the sequence before its next step
            if counted:
                capacity.leave(owner)

    def stats(self) -> EngineStats:
        worker = self._worker
        if worker is None or not self._ready:
            return EngineStats()
        n_ctx = worker.ctx.n_ctx if worker.ctx is not None else 1
        latest = worker.published  # the worker's own snapshot: never its live lists
        return EngineStats(
            running=latest.running,
            waiting=latest.waiting + worker.inbox.qsize(),
            kv_cache_usage=min(1.0, latest.kv_tokens / n_ctx),
            prefix_cache_queries=latest.prefix_queries,
            prefix_cache_hits=latest.prefix_hits,
            waiting_for_reader=latest.waiting_for_reader,
            preemptions=latest.preemptions,
        )
