"""The protocol caps (coderapi.protocol.limits), the bounded fan-out, the preparation pool and the
greedy picker's logit_bias arrays: each bound refuses or bounds work before any engine sees it."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from coderapi.backends.coder.choice import ChoiceDelta
from coderapi.backends.coder.fanout import collect, interleave
from coderapi.backends.prep_pool import PrepPool
from coderapi.engines.base import SamplingParams
from coderapi.errors import InvalidRequest, Overloaded
from coderapi.protocol import limits
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest, DetokenizeRequest, TokenizeRequest
from coderapi.protocol.validation import invalid_request_from

USER = [{"role": "user", "content": "hi"}]


def refusal(model: type[BaseModel], body: dict) -> InvalidRequest:
    """The 400 the API answers for `body` (validators raise it directly or through pydantic)."""
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return invalid_request_from(exc.errors())
    except InvalidRequest as exc:
        return exc
    raise AssertionError(f"{body} was accepted")


def chat(**extra) -> dict:
    return {"model": "m", "messages": USER, **extra}


def tool(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def test_tools_are_capped_at_128():
    ChatCompletionRequest.model_validate(chat(tools=[tool(f"f{i}") for i in range(limits.MAX_TOOLS)]))
    error = refusal(ChatCompletionRequest, chat(tools=[tool(f"f{i}") for i in range(5000)]))
    assert error.param == "tools" and "128" in error.message


@pytest.mark.parametrize("name", ["a.b", "x" * 65, "", "naïve", "with space"])
def test_tool_names_follow_openais_rule(name):
    assert refusal(ChatCompletionRequest, chat(tools=[tool(name)])).param == "tools"


def test_valid_tool_names_pass():
    ChatCompletionRequest.model_validate(chat(tools=[tool("get_weather-2"), tool("x" * 64)]))


@pytest.mark.parametrize(
    "stop", [["a", "b", "c", "d", "e"], "x" * (limits.MAX_STOP_CHARS + 1), ["ok", "y" * (limits.MAX_STOP_CHARS + 1)]]
)
def test_stop_sequences_are_capped_in_number_and_length(stop):
    for model, body in ((ChatCompletionRequest, chat(stop=stop)), (CompletionRequest, {"model": "m", "stop": stop})):
        assert refusal(model, body).param == "stop"


def test_stop_at_the_caps_passes():
    ChatCompletionRequest.model_validate(chat(stop=["z" * limits.MAX_STOP_CHARS] * limits.MAX_STOP_SEQUENCES))


def test_logit_bias_is_capped_at_300_entries():
    ChatCompletionRequest.model_validate(chat(logit_bias={str(i): 1.0 for i in range(limits.MAX_LOGIT_BIAS)}))
    whole_vocabulary = {str(i): -100.0 for i in range(151_936)}
    for model, body in (
        (ChatCompletionRequest, chat(logit_bias=whole_vocabulary)),
        (CompletionRequest, {"model": "m", "logit_bias": whole_vocabulary}),
    ):
        error = refusal(model, body)
        assert error.param == "logit_bias" and "300" in error.message


@pytest.mark.parametrize("key", ["-1", "abc", "²", "1" * 30])
def test_logit_bias_keys_are_token_ids(key):
    assert refusal(ChatCompletionRequest, chat(logit_bias={key: 1.0})).param == "logit_bias"


def test_n_is_capped_at_128():
    assert ChatCompletionRequest.model_validate(chat(n=128)).n == 128
    assert refusal(ChatCompletionRequest, chat(n=129)).param == "n"
    assert refusal(CompletionRequest, {"model": "m", "n": 129}).param == "n"
    assert refusal(CompletionRequest, {"model": "m", "best_of": 21}).param == "best_of"


def test_prompts_times_n_is_capped():
    error = refusal(CompletionRequest, {"model": "m", "prompt": ["a"] * 4000, "n": 16})
    assert error.param == "prompt" and "2048" in error.message
    error = refusal(CompletionRequest, {"model": "m", "prompt": ["a"] * 10, "n": 16})
    assert error.param == "n" and error.code == "too_many_choices" and "160" in error.message
    error = refusal(CompletionRequest, {"model": "m", "prompt": ["a"] * 200})
    assert error.param == "prompt" and error.code == "too_many_choices"
    error = refusal(CompletionRequest, {"model": "m", "prompt": ["a"] * 8, "n": 2, "best_of": 20})
    assert error.param == "n"  # best_of counts per prompt too
    CompletionRequest.model_validate({"model": "m", "prompt": ["a"] * 8, "n": 16})
    # One prompt of token ids is one prompt, however long.
    CompletionRequest.model_validate({"model": "m", "prompt": list(range(5000)), "n": 128})


def test_message_count_is_capped():
    ChatCompletionRequest.model_validate(chat(messages=USER * limits.MAX_MESSAGES))
    assert refusal(ChatCompletionRequest, chat(messages=USER * (limits.MAX_MESSAGES + 1))).param == "messages"
    assert refusal(TokenizeRequest, {"messages": USER * (limits.MAX_MESSAGES + 1)}).param == "messages"


def test_detokenize_ids_are_capped():
    assert refusal(DetokenizeRequest, {"tokens": [1] * (limits.MAX_DETOKENIZE_TOKENS + 1)}).param == "tokens"


def test_repo_context_files_are_capped():
    files = [{"path": f"f{i}.py", "content": ""} for i in range(limits.MAX_REPO_FILES + 1)]
    assert refusal(CompletionRequest, {"model": "m", "repo_context": {"files": files}}).param == "repo_context"


# ---- fan-out: a task per running choice, never one per choice ----


async def _choice(index: int, running: list[int], peak: list[int]):
    running[0] += 1
    peak[0] = max(peak[0], running[0])
    try:
        for _ in range(3):
            await asyncio.sleep(0)
            yield ChoiceDelta(index, "x")
        yield ChoiceDelta(index, finish_reason="stop")
    finally:
        running[0] -= 1


def test_interleave_runs_at_most_max_active_choices_at_once():
    async def main():
        running, peak = [0], [0]
        before = len(asyncio.all_tasks())
        seen_tasks = []

        async def watched():
            async for delta in interleave([_choice(i, running, peak) for i in range(128)], max_active=4):
                seen_tasks.append(len(asyncio.all_tasks()) - before)
                yield delta

        results = await collect(watched(), 128)
        return results, peak[0], max(seen_tasks)

    results, peak, tasks = asyncio.run(main())
    assert [r.text for r in results] == ["xxx"] * 128
    assert all(r.finish_reason == "stop" for r in results)
    assert peak == 4 and tasks <= 4


def test_interleave_forwards_a_choice_error():
    async def broken():
        yield ChoiceDelta(1, "a")
        raise RuntimeError("engine failed")

    async def main():
        running, peak = [0], [0]
        streams = [_choice(0, running, peak), broken(), _choice(2, running, peak)]
        async for _ in interleave(streams, max_active=2):
            pass

    with pytest.raises(RuntimeError, match="engine failed"):
        asyncio.run(main())


# ---- the preparation pool ----


def test_prep_pool_runs_work_off_the_event_loop_and_refuses_when_full():
    async def main():
        pool = PrepPool(threads=1, max_queued=1)
        release = threading.Event()
        loop_thread = threading.get_ident()
        try:
            first = asyncio.create_task(pool.run(lambda: (release.wait(5), threading.get_ident())[1]))
            second = asyncio.create_task(pool.run(lambda: 2))
            await asyncio.sleep(0.05)
            with pytest.raises(Overloaded):
                await pool.run(lambda: 3)
            release.set()
            return await first, await second, loop_thread
        finally:
            release.set()
            pool.close()

    worker_thread, second, loop_thread = asyncio.run(main())
    assert worker_thread != loop_thread and second == 2


# ---- the greedy picker: logit_bias as arrays, same pick as before ----


def _reference_pick(row, bias: dict[int, float], counts: dict[int, int], repeat, freq, present) -> int:
    """The pick of llama.cpp's chain (bias -> penalties -> greedy), written plainly."""
    row = row.astype(np.float32).copy()
    for token, value in bias.items():
        row[token] += np.float32(value)
    for token, count in counts.items():
        v = row[token]
        v = v * np.float32(repeat) if v <= 0 else v / np.float32(repeat)
        row[token] = v - (np.float32(count) * np.float32(freq) + np.float32(present))
    return int(row.argmax())


@pytest.mark.parametrize("seed", range(5))
def test_greedy_picker_bias_arrays_pick_as_the_chain(seed):
    pytest.importorskip("llama_cpp")
    from coderapi.engines.llama_cpp.greedy import GreedyPicker

    rng = np.random.default_rng(seed)
    vocab = 5000
    bias = {int(t): float(rng.uniform(-5, 5)) for t in rng.choice(vocab, 300, replace=False)}
    prompt = [int(t) for t in rng.choice(list(bias)[:20] + list(range(40)), 64)]
    params = SamplingParams(temperature=0.0, logit_bias=bias, repetition_penalty=1.3, frequency_penalty=0.5,
                            presence_penalty=0.2)
    picker = GreedyPicker(vocab, params, prompt, last_n=64)
    row = rng.normal(size=vocab).astype(np.float32)
    ids, values = picker._adjusted(row)
    adjusted = row.copy()
    adjusted[ids] = values
    expected = _reference_pick(row, bias, dict(picker.counts), 1.3, 0.5, 0.2)
    assert int(adjusted.argmax()) == expected
    assert len(ids) == len(set(ids.tolist())) <= 300 + 64  # entries and penalized tokens, never the vocabulary
