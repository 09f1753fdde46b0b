"""Chat completions on a token engine: template, budget, sampling, choices, tool calls, answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Hashable

from coderapi.backends.base import RequestTally
from coderapi.backends.coder import grammars
from coderapi.backends.coder.choice import ChoiceDelta, run_choice
from coderapi.backends.coder.families import TOOL_PARSERS, ToolParserFactory
from coderapi.backends.coder.fanout import collect, interleave
from coderapi.backends.fair_pool import current_owner
from coderapi.backends.held_logprobs import check_held_logprobs
from coderapi.backends.coder.lazy_grammar import lazy_tool_grammar
from coderapi.backends.coder.lazy_tools import LazyTools
from coderapi.backends.coder.literal_text import LiteralText
from coderapi.backends.coder.messages import template_messages, template_tools
from coderapi.backends.coder.sampling import (
    SamplingRequest,
    completion_budget,
    prediction_ids,
    prompt_tokenizer,
    refused_past_context,
    sampling_params,
)
from coderapi.backends.coder.tool_calls import ParsedOutput, parse_tool_calls
from coderapi.engines.base import SamplingParams
from coderapi.protocol.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ResponseMessage,
    ResponseToolCall,
    ResponseToolCallFunction,
)
from coderapi.protocol.common import Logprobs, stop_list

if TYPE_CHECKING:  # the flows are CoderBackend's; it imports them
    from coderapi.backends.coder.backend import CoderBackend


@dataclass
class PreparedChat:
    request_id: str
    created: int
    model: str
    prompt_ids: list[int]
    params: list[SamplingParams]  # one per choice
    stops: list[str]
    tool_names: set[str]  # empty when no tools are offered (or tool_choice is "none"): no parsing
    max_calls: int | None  # 1 with parallel_tool_calls false
    echo_text: str
    lazy_tools: LazyTools | None = None  # tool_choice "auto": each call's grammar once the model starts it
    tool_parser: ToolParserFactory = TOOL_PARSERS["qwen2.5-coder"]  # the model family's (families.py)


def _sampling_request(request: ChatCompletionRequest) -> SamplingRequest:
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    return SamplingRequest.of(
        request, max_tokens=request.max_completion_tokens or request.max_tokens, logprobs=logprobs
    )


def chat_prompt(backend: CoderBackend, messages: list, tools: list | None, add_generation_prompt: bool = True) -> tuple[str, list[int]]:
    """The rendered prompt, as the model reads it, and its token ids: the template's markup is
    special tokens, the messages' and tools' text is text (literal_text.py). A prompt longer than the
    context is refused (400) once a part of it is found to be."""
    literal = LiteralText(backend.engine.info.control_texts)
    text = backend.template.render(
        literal.wrap_tree(template_messages(messages)),
        tools=literal.wrap_tree(template_tools(tools)),
        add_generation_prompt=add_generation_prompt,
    )
    with refused_past_context(backend.engine.info.context_length, "messages"):
        return literal.unwrap(text), literal.tokenize(text, prompt_tokenizer(backend.engine))


def request_prompt(backend: CoderBackend, request: ChatCompletionRequest) -> tuple[str, list[int]]:
    """`chat_prompt` of a request: its tools are in the prompt unless tool_choice is "none"."""
    tools_active = bool(request.tools) and request.tool_choice != "none"
    return chat_prompt(backend, request.messages, request.tools if tools_active else None)


def _grammar(request: ChatCompletionRequest, tools_active: bool, verify=None) -> str | None:
    """The tool-call grammar for `required` / a named choice, else the response_format one (if any).

    `verify`: the engine's sandboxed llama.cpp check of a grammar (grammars.GrammarVerifier), if any.
    """
    grammars.check_tools(request.tools)
    grammar = grammars.response_format_grammar(request.response_format, verify)
    if tools_active:
        parallel = request.parallel_tool_calls is not False
        grammar = grammars.tool_call_grammar(request.tools, request.tool_choice or "auto", parallel, verify) or grammar
    return grammar


def _lazy_tools(backend: CoderBackend, request: ChatCompletionRequest, grammar: str | None, verify) -> LazyTools | None:
    """With tool_choice "auto" (and no other grammar): the grammar a call gets once it has begun.
    The model setting `lazy_tool_grammar: false` turns it off (the benchmark's "before")."""
    if grammar is not None or not request.tools or (request.tool_choice or "auto") != "auto":
        return None
    if not backend.spec.lazy_tool_grammar:
        return None
    parallel = request.parallel_tool_calls is not False
    calls = lazy_tool_grammar(request.tools, parallel, verify)
    return LazyTools(calls, max_calls=None if parallel else 1) if calls is not None else None


async def prepare_chat(backend: CoderBackend, request: ChatCompletionRequest, request_id: str) -> PreparedChat:
    """Checks, grammar, template and tokens, on the app's preparation threads (never the loop); the
    engine is told whose request it runs (the user the task works for)."""
    return await backend.prepare(prepare_chat_now, backend, request, request_id, current_owner())


def prepare_chat_now(
    backend: CoderBackend, request: ChatCompletionRequest, request_id: str, owner: Hashable | None = None
) -> PreparedChat:
    tools_active = bool(request.tools) and request.tool_choice != "none"
    verify = backend.engine.verify_grammar
    grammar = _grammar(request, tools_active, verify)
    lazy_tools = _lazy_tools(backend, request, grammar, verify)
    backend.check_logit_bias(request.logit_bias)
    prompt, prompt_ids = request_prompt(backend, request)
    budget = completion_budget(
        request.max_completion_tokens or request.max_tokens,
        len(prompt_ids),
        backend.engine.info.context_length,
        backend.spec.generation.max_tokens,
    )
    base = _sampling_request(request)
    if not request.stream or tools_active:
        check_held_logprobs(
            choices=request.n or 1, budget=budget, top=base.logprobs, limit=backend.spec.max_answer_logprobs,
            param="top_logprobs" if request.top_logprobs else "logprobs", streamed=bool(request.stream),
        )
    predicted = prediction_ids(backend.engine, request.prediction)
    params = [
        sampling_params(
            base, backend.spec.generation, max_tokens=budget, grammar=grammar, seed_offset=i, prediction=predicted,
            owner=owner,
        )
        for i in range(request.n or 1)
    ]
    return PreparedChat(
        request_id=request_id,
        created=int(time.time()),
        model=backend.served_model,
        prompt_ids=prompt_ids,
        params=params,
        stops=stop_list(request.stop),
        tool_names={t.function.name for t in request.tools or []} if tools_active else set(),
        max_calls=1 if request.parallel_tool_calls is False else None,
        echo_text=prompt if request.echo else "",
        lazy_tools=lazy_tools,
        tool_parser=backend.tool_parser,
    )


def deltas(backend: CoderBackend, prepared: PreparedChat, tally: RequestTally) -> AsyncIterator[ChoiceDelta]:
    tally.count_prompt(len(prepared.prompt_ids), predicted=prepared.params[0].prediction_ids is not None)
    streams = [
        run_choice(backend.engine, i, prepared.prompt_ids, p, prepared.stops, tally, prepared.lazy_tools)
        for i, p in enumerate(prepared.params)
    ]
    return interleave(streams, max_active=backend.spec.n_parallel)


def _tool_calls(parsed: ParsedOutput) -> list[ResponseToolCall]:
    return [
        ResponseToolCall(id=c.id, function=ResponseToolCallFunction(name=c.name, arguments=c.arguments))
        for c in parsed.calls
    ]


def _choice(prepared: PreparedChat, result: ChoiceDelta) -> ChatChoice:
    parsed = parse_tool_calls(result.text, prepared.tool_names, prepared.max_calls, prepared.tool_parser)
    finish = "tool_calls" if parsed.calls and not parsed.truncated else result.finish_reason
    content = parsed.content
    return ChatChoice(
        index=result.index,
        message=ResponseMessage(
            content=(prepared.echo_text + content) if content is not None else (prepared.echo_text or None),
            tool_calls=_tool_calls(parsed),
        ),
        finish_reason=finish,
        logprobs=Logprobs(content=result.logprobs) if prepared.params[0].logprobs is not None else None,
    )


async def complete_chat(backend: CoderBackend, prepared: PreparedChat, tally: RequestTally) -> ChatCompletion:
    results = await collect(deltas(backend, prepared, tally), len(prepared.params))
    choices = [_choice(prepared, result) for result in results]
    tally.set_finish_reason(choices[0].finish_reason)
    return ChatCompletion(
        id=prepared.request_id, created=prepared.created, model=prepared.model, choices=choices, usage=tally.usage()
    )
