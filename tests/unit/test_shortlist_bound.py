"""shortlist_bound: when a grammar-filtered shortlist leaves llama.cpp's pick stages the tokens the whole
vocabulary would (pure decisions; tests/integration/test_shortlist_bound_llama.py runs llama.cpp's samplers)."""

from __future__ import annotations

import math

import numpy as np

from coderapi.engines.base import SamplingParams
from coderapi.engines.llama_cpp.shortlist_bound import kept_count, shortlist_suffices, top_p_kept


def params(**kw) -> SamplingParams:
    return SamplingParams(max_tokens=8, temperature=0.7, **kw)


def desc(*logits: float) -> np.ndarray:
    return np.array(sorted(logits, reverse=True), dtype=np.float32)


def test_top_k_is_settled_when_k_tokens_reach_the_threshold():
    logits = desc(*[-0.1 * i for i in range(25)])
    assert kept_count(logits, threshold=-2.0, params=params(top_k=20)) == 20
    assert shortlist_suffices(logits, -2.0, params(top_k=20))


def test_top_k_alone_is_not_settled_by_fewer_sure_tokens():
    logits = desc(*[-0.1 * i for i in range(10)])
    assert kept_count(logits, threshold=-2.0, params=params(top_k=20)) is None


def test_nothing_is_settled_when_no_allowed_token_reaches_the_threshold():
    assert kept_count(desc(-5.0, -6.0), threshold=-4.0, params=params(top_k=20, top_p=0.8)) is None


def test_a_tie_among_the_kept_tokens_or_at_the_cut_refuses_the_shortlist():
    tied_inside = desc(0.0, -1.0, -1.0, *[-2.0 - 0.1 * i for i in range(20)])
    assert not shortlist_suffices(tied_inside, -10.0, params(top_k=20))
    tied_at_cut = desc(*[-0.1 * i for i in range(19)], -5.0, -5.0)
    assert not shortlist_suffices(tied_at_cut, -10.0, params(top_k=20))
    tied_below_cut = desc(*[-0.1 * i for i in range(20)], -5.0, -5.0)
    assert shortlist_suffices(tied_below_cut, -10.0, params(top_k=20))


def test_a_confident_top_p_cut_is_settled_whatever_the_others_add():
    # One token holds nearly all the mass; 19 places left in top-k, each far below.
    logits = desc(0.0, -4.0, -5.0)
    assert top_p_kept(logits, threshold=-5.0, others=17, top_p=0.8) == 1
    assert kept_count(logits, -5.0, params(top_k=20, top_p=0.8)) == 1


def test_a_top_p_cut_the_others_could_move_is_refused():
    # Weights 1, 1/3, e^-3: alone, the first two hold 0.96 of the sum, so top-p 0.8 keeps two. 18 more
    # tokens each just under e^-3 could add 0.9 to the sum; then not even all three reach 0.8.
    logits = desc(0.0, math.log(1 / 3), -3.0)
    assert top_p_kept(logits, threshold=-3.0, others=0, top_p=0.8) == 2
    assert top_p_kept(logits, threshold=-3.0, others=18, top_p=0.8) is None


def test_a_cut_within_the_margin_is_refused():
    # Two equal weights and top_p 0.5: the cut lands exactly on the first token's cumulative weight.
    logits = np.array([0.0, -1e-7], dtype=np.float32)
    assert top_p_kept(logits, threshold=-50.0, others=0, top_p=0.5) is None


def test_top_p_without_top_k_or_with_a_huge_top_k_takes_the_full_chain():
    logits = desc(0.0, -5.0)
    assert kept_count(logits, -6.0, params(top_p=0.8)) is None
    assert kept_count(logits, -6.0, params(top_p=0.8, top_k=5000)) is None


def test_min_p_settles_when_the_threshold_is_below_its_floor():
    logits = desc(0.0, -1.0, -2.0, -8.0)
    # floor = 0 + ln 0.05 = -3.0: the two under it and everything off the list are dropped
    assert kept_count(logits, threshold=-4.0, params=params(top_k=20, min_p=0.05)) == 3
    assert kept_count(logits, threshold=-2.5, params=params(top_k=20, min_p=0.05)) is None


def test_no_cut_at_all_needs_the_whole_set():
    logits = desc(*[-0.1 * i for i in range(10)])
    assert kept_count(logits, -2.0, params(top_k=0)) is None
