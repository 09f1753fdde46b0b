"""Chat completions on a token engine: template, budget, sampling, choices, tool calls, answer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import AsyncIterator

from coderapi.backends.base import RequestTally
from coderapi.backends.local import grammars
from coderapi.backends.local.choice import ChoiceDelta, run_choice
from coderapi.backends.local.fanout import collect, interleave
from coderapi.backends.local.messages import template_messages, template_tools
from coderapi.backends.local.sampling import SamplingRequest, completion_budget, sampling_params
from coderapi.backends.local.tool_calls import ParsedOutput, parse_tool_calls
from coderapi.engines.base import SamplingParams
from coderapi.protocol.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    DeltaToolCall,
    DeltaToolCallFunction,
    ResponseMessage,
    ResponseToolCall,
    ResponseToolCallFunction,
)
from coderapi.protocol.common import Logprobs, Usage, stop_list


@dataclass
class PreparedChat:
    request_id: str
    created: int
    model: str
    prompt_ids: list[int]
    params: list[SamplingParams]  # one per choice
    stops: list[str]
    tool_names: set[str]
    echo_text: str


def _sampling_request(request: ChatCompletionRequest) -> SamplingRequest:
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    return SamplingRequest(
        max_tokens=request.max_completion_tokens or request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        min_p=request.min_p,
        repetition_penalty=request.repetition_penalty,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        logit_bias=request.logit_bias,
        seed=request.seed,
        logprobs=logprobs,
    )


def render_prompt(backend, request: ChatCompletionRequest) -> str:
    tools_active = bool(request.tools) and request.tool_choice != "none"
    messages = template_messages(request.messages)
    return backend.template.render(messages, tools=template_tools(request.tools) if tools_active else None)


async def prepare_chat(backend, request: ChatCompletionRequest, request_id: str) -> PreparedChat:
    prompt = render_prompt(backend, request)
    prompt_ids = await backend.tokenize(prompt)
    budget = completion_budget(
        request.max_completion_tokens or request.max_tokens,
        len(prompt_ids),
        backend.engine.info.context_length,
        backend.spec.generation.max_tokens,
    )
    tools_active = bool(request.tools) and request.tool_choice != "none"
    grammar = grammars.response_format_grammar(request.response_format)
    if tools_active:
        grammar = grammars.tool_call_grammar(
            request.tools, request.tool_choice or "auto", request.parallel_tool_calls is not False
        ) or grammar
    backend.check_logit_bias(request.logit_bias)
    base = _sampling_request(request)
    params = [
        sampling_params(base, backend.spec.generation, max_tokens=budget, grammar=grammar, seed_offset=i)
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
        echo_text=prompt if request.echo else "",
    )


def _deltas(backend, prepared: PreparedChat, tally: RequestTally) -> AsyncIterator[ChoiceDelta]:
    tally.prompt_tokens = len(prepared.prompt_ids)
    streams = [
        run_choice(backend.engine, i, prepared.prompt_ids, p, prepared.stops, tally)
        for i, p in enumerate(prepared.params)
    ]
    return interleave(streams)


def _tool_calls(parsed: ParsedOutput) -> list[ResponseToolCall]:
    return [
        ResponseToolCall(id=c.id, function=ResponseToolCallFunction(name=c.name, arguments=c.arguments))
        for c in parsed.calls
    ]


async def complete_chat(backend, prepared: PreparedChat, tally: RequestTally) -> ChatCompletion:
    results = await collect(_deltas(backend, prepared, tally), len(prepared.params))
    choices = []
    for result in results:
        parsed = parse_tool_calls(result.text, prepared.tool_names)
        finish = "tool_calls" if parsed.calls else result.finish_reason
        content = parsed.content if parsed.calls else result.text
        choices.append(
            ChatChoice(
                index=result.index,
                message=ResponseMessage(
                    content=(prepared.echo_text + content) if content is not None else None,
                    tool_calls=_tool_calls(parsed),
                ),
                finish_reason=finish,
                logprobs=Logprobs(content=result.logprobs) if prepared.params[0].logprobs is not None else None,
            )
        )
    tally.finish_reason = choices[0].finish_reason
    return ChatCompletion(
        id=prepared.request_id, created=prepared.created, model=prepared.model, choices=choices, usage=tally.usage()
    )


async def stream_chat(
    backend, prepared: PreparedChat, tally: RequestTally, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=prepared.request_id, created=prepared.created, model=prepared.model, choices=choices, usage=usage
        )

    want_logprobs = prepared.params[0].logprobs is not None
    buffers: dict[int, str] = {}  # with tools offered, text is held until it is known not to be a call
    deltas = _deltas(backend, prepared, tally)
    # The first token comes before the role chunk, so a refusal (queue full) is still an HTTP error.
    first = await anext(deltas, None)
    for index in range(len(prepared.params)):
        yield chunk([ChunkChoice(index=index, delta=Delta(role="assistant", content=prepared.echo_text))])
    async for delta in _chain(first, deltas):
        if prepared.tool_names:
            buffers[delta.index] = buffers.get(delta.index, "") + delta.text
            if delta.finish_reason is None:
                continue
            for piece in _tool_chunks(delta.index, buffers.pop(delta.index, ""), prepared.tool_names, delta):
                yield chunk([piece])
            continue
        logprobs = Logprobs(content=delta.logprobs) if want_logprobs and delta.logprobs else None
        if delta.text or logprobs:
            yield chunk([ChunkChoice(index=delta.index, delta=Delta(content=delta.text), logprobs=logprobs)])
        if delta.finish_reason is not None:
            tally.finish_reason = tally.finish_reason or delta.finish_reason
            yield chunk([ChunkChoice(index=delta.index, delta=Delta(), finish_reason=delta.finish_reason)])
    if include_usage:
        yield chunk([], usage=tally.usage())


async def _chain(first: ChoiceDelta | None, rest: AsyncIterator[ChoiceDelta]) -> AsyncIterator[ChoiceDelta]:
    if first is not None:
        yield first
    async for delta in rest:
        yield delta


def _tool_chunks(index: int, text: str, tool_names: set[str], final: ChoiceDelta) -> list[ChunkChoice]:
    parsed = parse_tool_calls(text, tool_names)
    if not parsed.calls:
        pieces = [ChunkChoice(index=index, delta=Delta(content=text))] if text else []
        return pieces + [ChunkChoice(index=index, delta=Delta(), finish_reason=final.finish_reason)]
    pieces = [ChunkChoice(index=index, delta=Delta(content=parsed.content))] if parsed.content else []
    for position, call in enumerate(parsed.calls):
        pieces.append(
            ChunkChoice(
                index=index,
                delta=Delta(
                    tool_calls=[
                        DeltaToolCall(
                            index=position,
                            id=call.id,
                            type="function",
                            function=DeltaToolCallFunction(name=call.name, arguments=""),
                        )
                    ]
                ),
            )
        )
        pieces.append(
            ChunkChoice(
                index=index,
                delta=Delta(
                    tool_calls=[DeltaToolCall(index=position, function=DeltaToolCallFunction(arguments=call.arguments))]
                ),
            )
        )
    return pieces + [ChunkChoice(index=index, delta=Delta(), finish_reason="tool_calls")]

