"""GreedyPicker's arithmetic against the chain it stands for, applied token by token over the whole row:
logit bias, then penalties (repetition, frequency, presence), then the first maximum.

The real model's check is tests/integration/test_greedy_picker.py; this one covers the shortcuts
(an untouched argmax when bias and penalties only lower logits, the vectorized penalties) on rows
built to hit them: ties, the argmax inside the window, negative penalties that raise logits.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.engines.base import SamplingParams
from coderapi.engines.llama_cpp.greedy import GreedyPicker

VOCAB = 64
F32 = np.float32


def chain_pick(row: np.ndarray, params: SamplingParams, window: list[int]) -> int:
    adjusted = row.copy()
    for token, bias in params.logit_bias.items():
        adjusted[int(token)] += F32(bias)
    counts: dict[int, int] = {}
    for token in window:
        counts[token] = counts.get(token, 0) + 1
    for token, count in counts.items():
        value = adjusted[token]
        value = value * F32(params.repetition_penalty) if value <= 0 else value / F32(params.repetition_penalty)
        adjusted[token] = value - (F32(count) * F32(params.frequency_penalty) + F32(params.presence_penalty))
    return int(adjusted.argmax())


logits = st.lists(st.sampled_from([-3.0, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 2.5, 7.0]), min_size=VOCAB, max_size=VOCAB)
tokens = st.integers(0, VOCAB - 1)


@settings(max_examples=400, deadline=None)
@given(
    row=logits,
    prompt=st.lists(tokens, max_size=20),
    output=st.lists(tokens, max_size=12),
    repeat=st.sampled_from([1.0, 1.05, 1.3, 0.8]),
    freq=st.sampled_from([0.0, 0.4, -0.5]),
    present=st.sampled_from([0.0, 0.3, -0.2]),
    bias=st.dictionaries(tokens, st.sampled_from([-100.0, -2.0, 1.5, 100.0]), max_size=4),
    last_n=st.sampled_from([0, 4, 16]),
)
def test_pick_is_the_chains_first_maximum(row, prompt, output, repeat, freq, present, bias, last_n) -> None:
    params = SamplingParams(temperature=0.0, repetition_penalty=repeat, frequency_penalty=freq,
                            presence_penalty=present, logit_bias=bias)
    row = np.array(row, dtype=F32)
    picker = GreedyPicker(VOCAB, params, prompt, last_n)
    history = list(prompt)
    for token in [*output, None]:
        penalizes = last_n > 0 and (repeat != 1.0 or freq != 0.0 or present != 0.0)
        window = history[-last_n:] if penalizes else []
        before = row.copy()
        assert picker.pick(row) == chain_pick(row, params, window)
        assert np.array_equal(row, before, equal_nan=True)  # the raw row is left as it was
        if token is not None:
            picker.accept(token)
            history.append(token)


def test_the_shortcut_only_where_every_change_lowers_a_logit() -> None:
    row = np.zeros(VOCAB, dtype=F32)
    row[[3, 5, 9]] = 4.0  # a tie: 3 is the raw first maximum, and in the window
    picker = GreedyPicker(VOCAB, SamplingParams(temperature=0.0, repetition_penalty=1.5), [3, 3, 5], last_n=8)
    assert picker.only_lowers
    assert picker.pick(row) == 9  # 3 and 5 fall to 4 / 1.5
    row[9] = 1.0
    assert picker.pick(row) == 3  # 3 and 5 tie again, below: the first
    row[20] = 10.0
    assert picker.pick(row) == 20  # untouched: the raw argmax
    raising = [SamplingParams(temperature=0.0, frequency_penalty=-0.5),
               SamplingParams(temperature=0.0, repetition_penalty=0.9),
               SamplingParams(temperature=0.0, logit_bias={7: 1.0})]
    assert not any(GreedyPicker(VOCAB, params, [3], last_n=8).only_lowers for params in raising)
