"""Whether a draft pays (engines/llama_cpp/draft_value.py), and the scheduler weighing it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coderapi.engines.llama_cpp.draft_value import DraftOffer, StepCosts, best_draft_length
from coderapi.engines.llama_cpp.scheduler import SeqView, plan_step

ROWS = (1, 2, 3, 4, 8, 16, 32, 64)
# Measured on the 2-core EPYC VM, repacked, in one-row steps (bench/step_rows.py, 2026-12-05).
THIS_VM = StepCosts(ROWS, (0,), ((1.0, 2.40, 3.06, 3.28, 4.08, 7.17, 10.0, 17.7),))


def costs(points: dict[int, float]) -> StepCosts:
    return StepCosts(tuple(points), (0,), (tuple(points.values()),))


def test_costs_are_the_points_and_linear_between_and_beyond():
    assert THIS_VM.at(1) == 1.0 and THIS_VM.at(3) == 3.06 and THIS_VM.at(64) == 17.7
    assert THIS_VM.at(6) == pytest.approx((3.28 + 4.08) / 2)
    assert THIS_VM.at(96) == pytest.approx(17.7 + (17.7 - 10.0))  # the last segment's slope
    assert StepCosts((1,), (0,), ((2.0,),)).at(1) == 2.0


def test_costs_follow_the_context_between_and_beyond_the_lengths_measured():
    two = StepCosts((1, 32), (128, 1024), ((1.0, 12.0), (2.0, 18.0)))
    assert two.at(1, 128) == 1.0 and two.at(32, 1024) == 18.0
    assert two.at(1, 0) == 1.0  # below the shortest: the shortest's
    assert two.at(32, 576) == pytest.approx(15.0)  # half way
    assert two.at(1, 1920) == pytest.approx(3.0)  # beyond: attention's share keeps growing
    noisy = StepCosts((1,), (128, 1024), ((2.0,), (1.0,)))  # the longer measured faster (noise)
    assert noisy.at(1, 5000) == 1.0  # never below the faster measurement
    assert StepCosts((1,), (0,), ((1.0,),), overhead=0.5).at(1) == 1.5  # the worker's own time per step


def always(n: int) -> float:
    return float(n)


def test_no_draft_of_two_pays_where_three_rows_cost_three_steps():
    offer = DraftOffer([5, 6], always)  # even if certain to be accepted: 3 tokens for 3.06 steps
    assert best_draft_length(offer, 2, THIS_VM, 1, 1.0) == (0, 0.0)
    cheap = costs({1: 1.0, 2: 1.6, 3: 1.8, 4: 2.0})  # the same VM's costs two days earlier
    assert best_draft_length(offer, 2, cheap, 1, 1.0) == (2, 2.0)


def test_a_long_certain_draft_pays_and_a_rarely_right_one_does_not():
    tokens = list(range(40))
    assert best_draft_length(DraftOffer(tokens, always), 40, THIS_VM, 1, 1.0) == (40, 40.0)
    assert best_draft_length(DraftOffer(tokens, lambda n: min(n, 1.5)), 40, THIS_VM, 1, 1.0) == (0, 0.0)
    # The source's length is weighed, not shorter cuts: 7 tokens, runs of about 5 (6 tokens for 4.08 steps).
    assert best_draft_length(DraftOffer(tokens[:7], lambda n: min(n, 5.0)), 40, THIS_VM, 1, 1.0) == (7, 5.0)
    assert best_draft_length(DraftOffer(tokens[:7], lambda n: min(n, 5.0)), 3, THIS_VM, 1, 1.0) == (3, 3.0)


def test_the_workers_own_time_per_step_makes_a_certain_short_draft_pay():
    # 3 rows a little over 3 one-row steps, and ~0.7 ms a step beyond llama_decode (as in-process here).
    measured = StepCosts((1, 3), (0,), ((0.0165, 0.0500),))
    certain = DraftOffer([5, 6], always)
    assert best_draft_length(certain, 2, measured, 1, 1.0) == (0, 0.0)
    assert best_draft_length(certain, 2, replace(measured, overhead=0.0007), 1, 1.0) == (2, 2.0)
    assert best_draft_length(DraftOffer([5, 6], lambda n: 0.57 * n), 2, replace(measured, overhead=0.0007), 1,
                             1.0) == (0, 0.0)  # n-gram drafts' hit rate on new code


def test_without_costs_or_an_estimate_the_offer_is_drafted_as_before():
    assert best_draft_length(DraftOffer([1, 2, 3]), 2, THIS_VM, 1, 1.0) == (2, 2.0)
    assert best_draft_length(DraftOffer([1, 2, 3], lambda n: 0.0), 5, None, 1, 1.0) == (3, 3.0)
    assert best_draft_length(DraftOffer([]), 5, THIS_VM, 1, 1.0) == (0, 0.0)


@given(st.lists(st.integers(0, 9), min_size=1, max_size=64), st.integers(1, 64), st.integers(1, 8),
       st.floats(0.0, 1.0))
def test_a_chosen_draft_always_raises_the_steps_tokens_per_cost(tokens, limit, rows, hit):
    def expected(n: int) -> float:
        return sum(hit ** i for i in range(1, n + 1))

    n, got = best_draft_length(DraftOffer(tokens, expected), limit, THIS_VM, rows, float(rows))
    assert 0 <= n <= min(limit, len(tokens))
    if n:
        assert got == expected(n)
        assert (rows + got) / THIS_VM.at(rows + n) > rows / THIS_VM.at(rows)


def decoding(key: int) -> SeqView:
    return SeqView(key, prompt_len=10, n_prompt_done=10, kv_len=10, next_token=1, n_generated=1, max_tokens=500,
                   drafts=True)


def test_the_plan_drafts_only_what_pays_counting_the_drafts_before():
    offers = {0: DraftOffer(list(range(10)), always), 1: DraftOffer(list(range(10)), lambda n: min(n, 1.0))}
    plan = plan_step([decoding(0), decoding(1)], 512, drafts=lambda key, limit, ctx: offers[key], costs=THIS_VM)
    # The second's one expected token is not worth its rows in a step of 12 that gives 12 tokens.
    assert [len(p.draft) for p in plan.decode] == [10, 0]
    ungated = plan_step([decoding(0), decoding(1)], 512, drafts=lambda key, limit, ctx: offers[key])
    assert [len(p.draft) for p in ungated.decode] == [10, 10]


def test_a_steps_time_beyond_the_measured_decode_is_averaged_into_the_overhead():
    measured = StepCosts((1, 3), (0,), ((0.016, 0.048),))
    after = measured.after_step(1, 500, 0.017)  # 1 ms beyond the one-row step's decode
    assert after.overhead == pytest.approx(0.05 * 0.001) and after.seconds == measured.seconds
    assert after.after_step(3, 500, 0.040).overhead == pytest.approx(0.95 * after.overhead)  # faster: nothing beyond
