"""shortlist_bound against llama.cpp's own pick samplers (top-k, top-p, min-p, temperature, dist), on
crafted candidate arrays: wherever it says the shortlist suffices, the seeded draw from the shortlist
is the draw from the whole vocabulary. No model needed, only llama-cpp-python."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

from coderapi.engines.base import SamplingParams  # noqa: E402
from coderapi.engines.llama_cpp.candidates import TOKEN_DATA, apply  # noqa: E402
from coderapi.engines.llama_cpp.chain import PICK, SamplerChain  # noqa: E402
from coderapi.engines.llama_cpp.shortlist_bound import shortlist_suffices  # noqa: E402

VOCAB = 4000
TRIALS = 400


def draw(params: SamplingParams, ids: np.ndarray, logits: np.ndarray) -> int:
    """The token llama.cpp's pick stages draw from these candidates (in id order, as a vocabulary)."""
    order = np.argsort(ids)
    candidates = np.zeros(ids.size, dtype=TOKEN_DATA)
    candidates["id"], candidates["logit"] = ids[order], logits[order]
    chain = SamplerChain(None, params, [], stages=(PICK,))
    try:
        array = apply(chain.ptr, candidates)
        return int(candidates["id"][array.selected])
    finally:
        chain.free()


def trial(rng: np.random.Generator, params: SamplingParams, ignore_others: bool = False) -> tuple[bool, bool]:
    """One crafted step: (whether the bound accepts the shortlist, whether both draws agree).

    `sure` allowed tokens at or above the threshold, a few allowed ones below it (a penalized token
    on the list), and allowed tokens off the list below the threshold, with the rest of the
    vocabulary masked (-inf) as the grammar leaves it."""
    n_sure = int(rng.integers(1, 30))
    spread = rng.uniform(1.0, 15.0)  # from a flat head to one confident token
    sure = np.sort(rng.uniform(-spread, 0.0, n_sure).astype(np.float32))[::-1]
    sure[0] = 0.0
    threshold = np.float32(sure[-1] - rng.uniform(0.0, 0.5))
    below_on_list = (threshold - rng.uniform(0.01, 3.0, int(rng.integers(0, 4)))).astype(np.float32)
    off_list = (threshold - rng.uniform(0.001, 2.0, int(rng.integers(0, 60)))).astype(np.float32)
    listed = np.concatenate([sure, below_on_list])
    ids = rng.permutation(VOCAB).astype(np.int32)
    listed_ids, off_ids = ids[: listed.size], ids[listed.size : listed.size + off_list.size]
    masked_ids = ids[listed.size + off_list.size :]

    # The naive rule judges as if nothing off the list could be allowed.
    accepted = shortlist_suffices(-np.sort(-listed), float("-inf") if ignore_others else float(threshold), params)
    short = draw(params, listed_ids, listed)
    whole = draw(
        params,
        np.concatenate([listed_ids, off_ids, masked_ids]),
        np.concatenate([listed, off_list, np.full(masked_ids.size, -np.inf, dtype=np.float32)]),
    )
    return accepted, short == whole


SETTINGS = [
    dict(temperature=0.7, top_k=20, top_p=0.8),
    dict(temperature=1.0, top_k=40, top_p=0.95),
    dict(temperature=1.3, top_k=20),
    dict(temperature=1.0, top_k=20, min_p=0.1),
    dict(temperature=1.0, top_k=60, top_p=0.99, min_p=0.02),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["qwen", "wide", "top-k", "min-p", "deep"])
def test_accepted_shortlists_draw_what_the_whole_vocabulary_draws(settings):
    rng = np.random.default_rng(2026)
    accepted = 0
    for i in range(TRIALS):
        params = SamplingParams(max_tokens=1, seed=1000 + i, **settings)
        ok, same = trial(rng, params)
        accepted += ok
        assert same or not ok, f"trial {i}: the bound accepted a shortlist whose draw differs"
    assert accepted > TRIALS / 10  # the fast path is not vacuous here


def test_the_bound_is_needed():
    """Guards the test above: judging as if nothing off the list could be allowed accepts
    shortlists whose draw differs from the whole vocabulary's."""
    rng = np.random.default_rng(7)
    wrong = 0
    for i in range(TRIALS):
        params = SamplingParams(max_tokens=1, seed=5000 + i, **SETTINGS[1])
        ok, same = trial(rng, params, ignore_others=True)
        wrong += ok and not same
    assert wrong > 0
