"""Every chat parameter through the openai SDK on the real 0.5B (short generations)."""

from __future__ import annotations

import math

import openai
import pytest
import requests

from tests.api.conftest import ALIAS_ID

pytestmark = pytest.mark.model


def sdk(platform):
    """The SDK with room for a slow, shared CPU (the api tier's client gives up after 30 s)."""
    return platform.client().with_options(timeout=300)

COUNT = [{"role": "user", "content": "Count from 1 to 20, separated by commas. Only the numbers."}]
CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
STORY = [{"role": "user", "content": "Write one sentence about a cat."}]


NOT_IN_SDK = ("top_k", "min_p", "repetition_penalty", "echo")  # sent through extra_body


def chat(platform, messages=COUNT, **extra):
    extra.setdefault("max_tokens", 16)
    extra.setdefault("temperature", 0)
    body = {key: extra.pop(key) for key in NOT_IN_SDK if key in extra}
    extra["extra_body"] = {**body, **extra.get("extra_body", {})}
    return sdk(platform).chat.completions.create(model=ALIAS_ID, messages=messages, **extra)


def streamed_text(platform, messages=COUNT, **extra) -> tuple[list[str], list]:
    chunks = list(chat(platform, messages, stream=True, **extra))
    return [c.choices[0].delta.content or "" for c in chunks if c.choices], chunks


def token_ids(platform, text: str) -> list[int]:
    response = requests.post(platform.base + "/tokenize", json={"prompt": text},
                             headers={"Authorization": f"Bearer {platform.key}"})
    return response.json()["tokens"]


def test_max_tokens_and_max_completion_tokens(real_platform):
    for key in ("max_tokens", "max_completion_tokens"):
        done = chat(real_platform, **{"max_tokens": None, key: 4})
        assert done.usage.completion_tokens == 4 and done.choices[0].finish_reason == "length"


def test_stop_across_token_boundaries_not_returned_nor_half_streamed(real_platform):
    baseline = chat(real_platform, max_tokens=24).choices[0].message.content
    assert "4, 5" in baseline, baseline
    expected = baseline[: baseline.index("4, 5")]
    for stop in ("4, 5", ["zzz", "4, 5"]):
        done = chat(real_platform, max_tokens=24, stop=stop)
        assert done.choices[0].message.content == expected and done.choices[0].finish_reason == "stop"
    pieces, _ = streamed_text(real_platform, max_tokens=24, stop="4, 5")
    assert "".join(pieces) == expected  # so no piece of "4, 5" was ever sent


def test_n_choices_streamed_interleaved_by_index(real_platform):
    done = chat(real_platform, n=2, max_tokens=8)
    assert [c.index for c in done.choices] == [0, 1]
    assert done.choices[0].message.content == done.choices[1].message.content  # greedy
    _, chunks = streamed_text(real_platform, n=3, max_tokens=8)
    pieces = [(c.choices[0].index, c.choices[0].delta.content) for c in chunks if c.choices and c.choices[0].delta.content]
    order = [index for index, _ in pieces]
    texts = ["".join(text for index, text in pieces if index == i) for i in range(3)]
    assert texts[0] and texts == [texts[0]] * 3  # each choice's own whole answer under its index (greedy)
    # interleaved: every choice has sent its first piece before any choice sends its last
    firsts = [order.index(i) for i in range(3)]
    lasts = [len(order) - 1 - order[::-1].index(i) for i in range(3)]
    assert max(firsts) < min(lasts), order
    finishes = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finishes == [0, 1, 2]


def test_seed_gives_the_same_sample_and_another_seed_another(real_platform):
    def sample(seed):
        return chat(real_platform, STORY, temperature=1.2, top_p=1, top_k=0, max_tokens=16, seed=seed)

    first = sample(7).choices[0].message.content
    assert sample(7).choices[0].message.content == first
    others = {sample(s).choices[0].message.content for s in (8, 9, 10)}
    assert others - {first}


def test_n_with_seed_gives_different_reproducible_choices(real_platform):
    def run():
        return chat(real_platform, STORY, n=2, temperature=1.2, top_k=0, top_p=1, seed=3, max_tokens=12)

    # A first run puts the prompt in the prefix cache of both slots; the two runs compared then
    # take the same path (cached vs freshly batched prompts differ in the logits' last bits).
    run()
    done, again = run(), run()
    texts = [c.message.content for c in done.choices]
    assert texts == [c.message.content for c in again.choices] and texts[0] != texts[1]


@pytest.mark.parametrize("narrowing", [{"top_k": 1}, {"top_p": 0.01}, {"min_p": 0.999}])
def test_top_k_top_p_min_p_narrow_sampling_to_the_greedy_token(real_platform, narrowing):
    greedy = chat(real_platform, STORY, max_tokens=12).choices[0].message.content
    extra = {"top_k": 0, "top_p": 1.0, **narrowing}
    for seed in (1, 2):
        hot = chat(real_platform, STORY, max_tokens=12, temperature=1.5, seed=seed, **extra)
        assert hot.choices[0].message.content == greedy


@pytest.mark.parametrize(
    ("messages", "penalty"),
    [(COUNT, {"repetition_penalty": 1.8}), (STORY, {"presence_penalty": 2.0}), (COUNT, {"frequency_penalty": 2.0})],
)
def test_penalties_change_the_greedy_answer(real_platform, messages, penalty):
    plain = chat(real_platform, messages, max_tokens=24, repetition_penalty=1.0).choices[0].message.content
    penalised = chat(real_platform, messages, max_tokens=24, **{"repetition_penalty": 1.0, **penalty})
    assert penalised.choices[0].message.content != plain


def test_logit_bias_minus_100_bans_a_token_and_plus_100_forces_one(real_platform):
    answer = chat(real_platform, CAPITAL, max_tokens=4, logprobs=True)
    first = answer.choices[0].logprobs.content[0].token
    [banned] = token_ids(real_platform, first)
    biased = chat(real_platform, CAPITAL, max_tokens=4, logprobs=True, logit_bias={str(banned): -100})
    assert first not in [e.token for e in biased.choices[0].logprobs.content]
    [forced] = token_ids(real_platform, " banana")
    pushed = chat(real_platform, CAPITAL, max_tokens=3, logit_bias={str(forced): 100})
    assert pushed.choices[0].message.content == " banana" * 3


def test_logprobs_are_real_and_consistent(real_platform):
    done = chat(real_platform, CAPITAL, max_tokens=6, logprobs=True, top_logprobs=3, repetition_penalty=1.0)
    entries = done.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == done.choices[0].message.content
    for entry in entries:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and tops[0] < 0
        # greedy without penalties picks the model's most likely token
        assert entry.token == entry.top_logprobs[0].token and math.isclose(entry.logprob, tops[0], abs_tol=1e-4)
        assert sum(math.exp(t) for t in tops) <= 1.0001 and bytes(entry.bytes).decode() == entry.token
    assert entries[0].logprob > math.log(0.5)  # the model is sure of the capital of France


def test_logprobs_streamed(real_platform):
    _, chunks = streamed_text(real_platform, CAPITAL, max_tokens=6, logprobs=True, top_logprobs=2)
    whole = chat(real_platform, CAPITAL, max_tokens=6, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    entries = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [(e.token, round(e.logprob, 4)) for e in entries] == [(e.token, round(e.logprob, 4)) for e in whole]


def test_echo_returns_the_prompt_before_the_answer(real_platform):
    plain = chat(real_platform, CAPITAL, max_tokens=4).choices[0].message.content
    echoed = chat(real_platform, CAPITAL, max_tokens=4, echo=True).choices[0].message.content
    assert echoed.startswith("<|im_start|>system\n") and echoed.endswith("<|im_start|>assistant\n" + plain)


def test_prediction_and_user_are_accepted(real_platform):
    plain = chat(real_platform, CAPITAL, max_tokens=4).choices[0].message.content
    done = chat(real_platform, CAPITAL, max_tokens=4, user="user-42",
                prediction={"type": "content", "content": "Paris"})
    assert done.choices[0].message.content == plain  # prediction changes nothing but is validated


def test_temperature_zero_is_deterministic_and_high_temperature_varies(real_platform):
    assert len({chat(real_platform, STORY).choices[0].message.content for _ in range(2)}) == 1
    hot = {chat(real_platform, STORY, temperature=1.5, top_k=0, top_p=1).choices[0].message.content for _ in range(3)}
    assert len(hot) > 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "nope"}}}},
         "response_format"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
        ({"prediction": {"type": "other", "content": "x"}}, "prediction"),
    ],
)
def test_inconsistent_combinations_are_400_with_param(real_platform, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(real_platform, CAPITAL, extra_body=extra)
    assert caught.value.body["param"] == param
