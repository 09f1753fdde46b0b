"""Registry entries -> served models: which backend, which engine, which weights."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from coderapi.backends.coder.backend import CoderBackend
from coderapi.backends.served import ServedModel
from coderapi.config import ModelSpec, Settings
from coderapi.engines.base import Engine
from coderapi.engines.shared_slots import SharedSlots
from coderapi.weights.packaged import Progress, resolve_gguf

EngineFactory = Callable[[ModelSpec], Engine]


def llama_cpp_engine(spec: ModelSpec, gguf_path: Path, max_waiting: int, max_waiting_per_owner: int | None) -> Engine:
    from coderapi.engines.llama_cpp import LlamaCppEngine  # lazy: llama-cpp-python is optional

    return LlamaCppEngine(
        gguf_path,
        n_ctx_per_seq=spec.context_length,
        n_parallel=spec.n_parallel,
        n_threads=spec.n_threads or os.cpu_count(),
        prompt_rows_while_decoding=spec.prompt_rows_while_decoding,
        max_waiting=max_waiting,
        max_waiting_per_owner=max_waiting_per_owner,
        ngram_speculation=spec.speculation_ngram,
        exact_speculation=spec.speculation_exact,
        draft_gate=spec.speculation_cost_gate,
        repack=spec.weight_repack,
        huge_pages=spec.huge_pages,
    )


def shared_slots(spec: ModelSpec, settings: Settings) -> SharedSlots | None:
    """`upstream_slots` counted across every gateway on the settings' Redis, where one is set."""
    if not settings.redis_url or spec.upstream_slots < 1:
        return None
    # One set per served model id; the hash tag keeps it in one cluster slot with nothing else.
    key = f"coderapi:slots:{{{spec.id}}}"
    return SharedSlots(settings.redis_url, key, spec.upstream_slots, failure_mode=settings.redis_failure_mode)


def remote_engine(
    spec: ModelSpec, gguf_path: Path, max_waiting: int = 64, max_waiting_per_owner: int | None = None,
    shared: SharedSlots | None = None,
) -> Engine:
    """The Coder layer's engine for backend 'upstream' in mode 'coder': the replicas' raw completions,
    tokenized with the local GGUF's vocabulary."""
    from coderapi.engines.remote import RemoteCompletionEngine

    return RemoteCompletionEngine(
        spec.upstream_urls,
        gguf_path,
        api=spec.upstream_api,
        model=spec.upstream_model or spec.id,
        api_key=spec.upstream_api_key,
        context_length=spec.context_length,
        slots=spec.upstream_slots,
        max_waiting=max_waiting,
        max_waiting_per_owner=max_waiting_per_owner,
        shared_slots=shared,
    )


def build_served_models(
    settings: Settings, engine_factory: EngineFactory | None = None, progress: Progress | None = None
) -> list[ServedModel]:
    served = []
    for spec in settings.models:
        if spec.backend == "upstream" and spec.upstream_mode == "coder":
            if not spec.upstream_urls:
                raise ValueError(f"model {spec.id}: backend 'upstream' needs upstream_urls")
            engine = remote_engine(
                spec, resolve_gguf(spec.gguf, settings.resolved_model_cache_dir, progress),
                settings.max_waiting_requests, settings.max_waiting_requests_per_user, shared_slots(spec, settings),
            )
            where = f"{spec.upstream_api}: " + ", ".join(spec.upstream_urls)
            served.append(ServedModel(spec, CoderBackend(spec, engine), f"{where} (Coder layer, tokenizer {spec.gguf})"))
            continue
        if spec.backend == "upstream":
            from coderapi.backends.upstream import UpstreamBackend
            from coderapi.backends.upstream.token_count import TokenCounter

            # `gguf` names the tokenizer that counts a stream the upstream reported no usage for.
            tokenizer = TokenCounter(lambda spec=spec: resolve_gguf(spec.gguf, settings.resolved_model_cache_dir))
            backend = UpstreamBackend(
                spec, tokenizer, settings.max_waiting_requests, settings.max_waiting_requests_per_user,
                shared_slots(spec, settings),
            )
            served.append(ServedModel(spec, backend, "upstream: " + ", ".join(spec.upstream_urls)))
            continue
        if engine_factory is not None or spec.backend == "fake":
            from coderapi.engines.fake import FakeEngine

            engine = engine_factory(spec) if engine_factory else FakeEngine(context_length=spec.context_length)
            served.append(ServedModel(spec, CoderBackend(spec, engine), f"{engine.info.model_path} (scripted)"))
            continue
        path = resolve_gguf(spec.gguf, settings.resolved_model_cache_dir, progress)
        engine = llama_cpp_engine(
            spec, path, settings.max_waiting_requests, settings.max_waiting_requests_per_user
        )
        served.append(ServedModel(spec, CoderBackend(spec, engine), f"{path.name} via llama.cpp"))
    return served
