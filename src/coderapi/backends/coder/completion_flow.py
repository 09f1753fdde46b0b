"""Legacy completions and fill-in-the-middle, in the model family's FIM format (families.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Hashable

from coderapi.backends.base import RequestTally
from coderapi.backends.coder import grammars
from coderapi.backends.coder.choice import ChoiceDelta, run_choice
from coderapi.backends.coder.families import FimFormat, RepoFile
from coderapi.backends.coder.fanout import collect, interleave
from coderapi.backends.fair_pool import current_owner
from coderapi.backends.held_logprobs import check_held_logprobs
from coderapi.backends.coder.literal_text import LiteralText
from coderapi.backends.coder.sampling import (
    SamplingRequest,
    completion_budget,
    prediction_ids,
    prompt_tokenizer,
    refused_past_context,
    sampling_params,
)
from coderapi.backends.coder.token_names import TokenIdNames, named_id
from coderapi.engines.base import SamplingParams
from coderapi.errors import InvalidRequest
from coderapi.protocol.common import LogprobEntry, Usage, stop_list
from coderapi.protocol.completions import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest

if TYPE_CHECKING:  # the flows are CoderBackend's; it imports them
    from coderapi.backends.coder.backend import CoderBackend


@dataclass
class PreparedPrompt:
    ids: list[int]
    text: str


@dataclass
class PreparedCompletion:
    request_id: str
    created: int
    model: str
    prompts: list[PreparedPrompt]
    n: int
    params: SamplingParams
    stops: list[str]
    echo: bool
    token_id_names: bool = False  # return_tokens_as_token_ids


def completion_prompt(request: CompletionRequest, prompt: str, fim: FimFormat | None, literal: LiteralText | None = None) -> str:
    """The text the model continues: the prompt, in FIM form with a suffix, after any repo context
    (the family's repository-level format: the other files, then the current file's path and text).

    `literal`: with a suffix or repo context, the code (prompt, suffix, files, names) is wrapped by
    it, so the FIM markup alone is special tokens. A plain prompt is the caller's own markup."""
    if fim is None and (request.suffix is not None or request.repo_context is not None):
        param = "suffix" if request.suffix is not None else "repo_context"
        raise InvalidRequest("This model's family has no fill-in-the-middle format.", param=param)
    code = literal.wrap if literal is not None else (lambda text: text)
    body = prompt
    if request.suffix is not None:
        body = fim.middle_prompt(code(prompt), code(request.suffix))
    context = request.repo_context
    if context is None:
        return body
    if request.suffix is None:
        body = code(body)
    files = [RepoFile(code(f.path), code(f.content)) for f in context.files]
    return fim.repo_prompt(code(context.name), files, code(context.path), body)


def _tokenized_prompt(backend: CoderBackend, request: CompletionRequest, prompt: str) -> list[int]:
    """A prompt's ids; one longer than the context is refused (400) once a part of it is found to be."""
    tokenize = prompt_tokenizer(backend.engine)
    with refused_past_context(backend.engine.info.context_length, "prompt"):
        if request.suffix is None and request.repo_context is None:
            return tokenize(prompt)
        literal = LiteralText(backend.engine.info.control_texts)
        return literal.tokenize(completion_prompt(request, prompt, backend.family.fim, literal), tokenize)


def _prompts(backend: CoderBackend, request: CompletionRequest) -> list[PreparedPrompt]:
    raw = request.prompt
    if isinstance(raw, str):
        raw = [raw]
    if not raw:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    vocab = backend.engine.info.vocab_size
    prompts = []
    for item in raw:
        if isinstance(item, int):  # one prompt given as token ids
            return [_from_ids(backend, list(raw), vocab)]
        if isinstance(item, list):
            prompts.append(_from_ids(backend, item, vocab))
            continue
        prompts.append(PreparedPrompt(_tokenized_prompt(backend, request, item), item))
    if request.suffix is not None and len(prompts) != 1:
        raise InvalidRequest("fill-in-the-middle takes a single prompt", param="prompt")
    return prompts


def _from_ids(backend: CoderBackend, ids: list[int], vocab: int) -> PreparedPrompt:
    if not ids or any(not isinstance(t, int) or not 0 <= t < vocab for t in ids):
        raise InvalidRequest(f"prompt token ids must be non-empty and within [0, {vocab})", param="prompt")
    return PreparedPrompt(ids, backend.engine.detokenize(ids))


async def prepare_completion(backend: CoderBackend, request: CompletionRequest, request_id: str) -> PreparedCompletion:
    """Prompts (tokenized or detokenized), budget and sampling, on the app's preparation threads; the
    engine is told whose request it runs (the user the task works for)."""
    return await backend.prepare(prepare_completion_now, backend, request, request_id, current_owner())


def prepare_completion_now(
    backend: CoderBackend, request: CompletionRequest, request_id: str, owner: Hashable | None = None
) -> PreparedCompletion:
    prompts = _prompts(backend, request)
    longest = max(len(p.ids) for p in prompts)
    budget = completion_budget(
        request.max_tokens, longest, backend.engine.info.context_length, backend.spec.generation.max_tokens,
        param="prompt",
    )
    backend.check_logit_bias(request.logit_bias)
    stop_ids = frozenset()
    if request.suffix is not None or request.repo_context is not None:
        ends = backend.family.fim.end_tokens if backend.family.fim else ()
        stop_ids = frozenset(t for name in ends for t in backend.engine.tokenize(name)[:1])
    base = SamplingRequest.of(request, max_tokens=request.max_tokens, logprobs=request.logprobs)
    if not request.stream:
        check_held_logprobs(
            choices=len(prompts) * request.n, budget=budget, top=request.logprobs,
            limit=backend.spec.max_answer_logprobs, param="logprobs", streamed=False,
        )
    params = sampling_params(
        base, backend.spec.generation, max_tokens=budget, grammar=_grammar(backend, request), owner=owner
    )
    predicted = prediction_ids(backend.engine, request.prediction)
    params = SamplingParams(**{**params.__dict__, "stop_token_ids": stop_ids, "prediction_ids": predicted})
    return PreparedCompletion(
        request_id=request_id,
        created=int(time.time()),
        model=backend.served_model,
        prompts=prompts,
        n=request.n,
        params=params,
        stops=stop_list(request.stop),
        echo=request.echo,
        token_id_names=request.return_tokens_as_token_ids,
    )


def _grammar(backend: CoderBackend, request: CompletionRequest) -> str | None:
    """`structured_outputs.grammar`, through the same guard as every grammar (limits, then llama.cpp's parser)."""
    if request.structured_outputs is None:
        return None
    verify = backend.engine.verify_grammar
    return grammars.checked(request.structured_outputs.grammar, "structured_outputs.grammar", verify)


def _stream(backend: CoderBackend, prepared: PreparedCompletion, tally: RequestTally) -> AsyncIterator[ChoiceDelta]:
    tally.count_prompt(sum(len(p.ids) for p in prepared.prompts), predicted=prepared.params.prediction_ids is not None)
    # prompts x n is at most MAX_COMPLETION_CHOICES (protocol); the choices run at most
    # n_parallel at a time, so one request never fills the engine's waiting queue.
    streams = []
    engine = TokenIdNames(backend.engine) if prepared.token_id_names else backend.engine
    for p_index, prompt in enumerate(prepared.prompts):
        for j in range(prepared.n):
            params = prepared.params
            if params.seed is not None and j:
                params = SamplingParams(**{**params.__dict__, "seed": params.seed + j})
            streams.append(run_choice(engine, p_index * prepared.n + j, prompt.ids, params, prepared.stops, tally))
    return interleave(streams, max_active=backend.spec.n_parallel)


def _legacy_logprobs(entries: list[LogprobEntry], offset: int, engine=None) -> CompletionLogprobs:
    """`engine`: given when tokens are named "token_id:N", to measure their text for `text_offset`."""
    result = CompletionLogprobs()
    for entry in entries:
        result.tokens.append(entry.token)
        result.token_logprobs.append(entry.logprob)
        result.top_logprobs.append({t.token: t.logprob for t in entry.top_logprobs})
        result.text_offset.append(offset)
        token_id = named_id(entry.token) if engine is not None else None
        offset += len(engine.token_text(token_id) if token_id is not None else entry.token)
    return result


def _namer(backend: CoderBackend, prepared: PreparedCompletion):
    return backend.engine if prepared.token_id_names else None


def _prefix(prepared: PreparedCompletion, index: int) -> str:
    return prepared.prompts[index // prepared.n].text if prepared.echo else ""


async def complete_completion(backend: CoderBackend, prepared: PreparedCompletion, tally: RequestTally) -> Completion:
    total = len(prepared.prompts) * prepared.n
    results = await collect(_stream(backend, prepared, tally), total)
    want_logprobs = prepared.params.logprobs is not None
    choices = [
        CompletionChoice(
            index=r.index,
            text=_prefix(prepared, r.index) + r.text,
            finish_reason=r.finish_reason,
            logprobs=_legacy_logprobs(r.logprobs, len(_prefix(prepared, r.index)), _namer(backend, prepared)) if want_logprobs else None,
        )
        for r in results
    ]
    tally.set_finish_reason(choices[0].finish_reason)
    return Completion(
        id=prepared.request_id, created=prepared.created, model=prepared.model, choices=choices, usage=tally.usage()
    )


async def stream_completion(
    backend: CoderBackend, prepared: PreparedCompletion, tally: RequestTally, include_usage: bool
) -> AsyncIterator[Completion]:
    def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        return Completion(id=prepared.request_id, created=prepared.created, model=prepared.model, choices=choices, usage=usage)

    want_logprobs = prepared.params.logprobs is not None
    if prepared.echo:
        for index in range(len(prepared.prompts) * prepared.n):
            yield chunk([CompletionChoice(index=index, text=_prefix(prepared, index), finish_reason=None)])
    offsets: dict[int, int] = {}
    deltas = _stream(backend, prepared, tally)
    try:
        async for delta in deltas:
            if delta.finish_reason is not None:
                tally.set_finish_reason(delta.finish_reason, keep_first=True)
            # A token with no text of its own (part of a UTF-8 character) still has its logprob entry.
            if not delta.text and delta.finish_reason is None and not (want_logprobs and delta.logprobs):
                continue
            offset = offsets.get(delta.index, len(_prefix(prepared, delta.index)))
            offsets[delta.index] = offset + len(delta.text)
            logprobs = _legacy_logprobs(delta.logprobs, offset, _namer(backend, prepared)) if want_logprobs and delta.logprobs else None
            yield chunk([CompletionChoice(index=delta.index, text=delta.text, finish_reason=delta.finish_reason, logprobs=logprobs)])
        if include_usage:
            yield chunk([], usage=tally.usage())
    finally:
        await deltas.aclose()  # the choices stop with their reader, not when collected
