"""Draft proposal, re-anchoring and acceptance for speculative decoding (engines/llama_cpp/drafting.py)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.engines.llama_cpp.drafting import (
    MIN_DRAFT,
    OUTCOMES_KEPT,
    DraftCursor,
    Drafter,
    accepted_prefix,
    match_ends,
    pick_anchor,
)
from coderapi.engines.llama_cpp.scheduler import MAX_DRAFT_ROWS, NGRAM_MAX_DECODING, SHARED_DRAFT_ROWS, draft_budget

tokens = st.lists(st.integers(0, 5), max_size=40)


def naive_ends(ref: list[int], n: int, pattern: list[int]) -> list[int]:
    m = len(pattern)
    return [p for p in range(m, n) if ref[p - m : p] == pattern] if m else []


@given(tokens, st.lists(st.integers(0, 5), min_size=1, max_size=4))
def test_match_ends_finds_every_match_followed_by_a_token(ref, pattern):
    arr = np.array(ref or [0], dtype=np.int32)
    assert match_ends(arr, len(ref), pattern).tolist() == naive_ends(ref, len(ref), pattern)


def test_pick_anchor_prefers_the_first_match_forward_of_the_floor():
    ends = np.array([3, 10, 20])
    assert pick_anchor(ends, 0) == 3
    assert pick_anchor(ends, 11) == 20
    assert pick_anchor(ends, 21) == 20  # none forward: the last one before
    assert pick_anchor(np.array([], dtype=np.int64), 5) is None


def test_prediction_is_drafted_from_its_start_and_followed():
    cursor = DraftCursor([1, 2, 3, 4, 5, 6], grows=False, aligned_at_start=True, first_draft=3)
    assert cursor.propose(10) == [1, 2, 3]
    for t in (1, 2, 3):
        cursor.observe(t)
    cursor.verified(3, 3)  # wholly accepted: the next draft is twice as long
    assert cursor.propose(10) == [4, 5, 6]
    assert cursor.propose(2) == [4, 5]  # the caller's limit wins


def test_after_an_edit_the_rest_of_the_prediction_is_still_used():
    # "def old_name(x): return x" predicted, "def new_name(x): return x" generated.
    before, old, after = [10, 11], [20], [30, 31, 32, 33, 34]
    cursor = DraftCursor(before + old + [21] + after, grows=False, aligned_at_start=True, first_draft=8)
    for t in before:
        cursor.observe(t)
    cursor.observe(99)  # the new name: alignment lost
    assert cursor.propose(8) == []  # nothing in the prediction follows 99
    cursor.observe(21)  # the rest of the name, as in the prediction
    assert cursor.propose(8) == after


def test_re_anchoring_moves_forward_through_repeated_text():
    # The same line twice: after a mismatch in the second copy, drafting resumes in the second.
    line = [1, 2, 3, 4]
    cursor = DraftCursor(line + [7] + line + [8], grows=False, aligned_at_start=True, first_draft=8)
    for t in line + [7, 1]:
        cursor.observe(t)
    cursor.observe(9)  # an edit in the second line
    cursor.observe(3)
    assert cursor.propose(8) == [4, 8]


def test_context_cursor_looks_up_the_prompt_and_its_own_output():
    prompt = [5, 6, 7, 8, 9, 1, 2]
    cursor = DraftCursor(prompt, grows=True, capacity=10, min_match=2, first_draft=4)
    assert cursor.propose(4) == []  # the prompt's tail [1, 2] occurs nowhere before
    cursor.observe(5)
    cursor.observe(6)
    assert cursor.propose(4) == [7, 8, 9, 1]
    for t in (7, 8, 9, 1, 2):
        cursor.observe(t)
    assert cursor.propose(4)[:1] == [5]  # the prompt's own repetition continues


def test_draft_length_adapts_to_what_was_accepted():
    cursor = DraftCursor(list(range(100)), grows=False, aligned_at_start=True, first_draft=4, max_draft=16)
    cursor.verified(4, 4)
    cursor.verified(8, 8)
    assert cursor.k == 16
    cursor.verified(16, 16)
    assert cursor.k == 16  # capped
    cursor.verified(16, 3)
    assert cursor.k == 8
    assert (cursor.stats.accepted, cursor.stats.rejected) == (31, 13)


def test_drafter_prefers_the_prediction_and_counts_per_source():
    prediction = DraftCursor([1, 2, 3], grows=False, aligned_at_start=True)
    context = DraftCursor([4, 5, 4], grows=True, capacity=8, min_match=1)
    drafter = Drafter(prediction, context)
    assert drafter.propose(4, use_context=True) == [1, 2, 3]
    drafter.verified(3, 1)
    assert (drafter.prediction_stats.accepted, drafter.prediction_stats.rejected) == (1, 2)
    drafter.observe(4)  # the prediction is lost; the context knows what followed a 4
    assert drafter.propose(4, use_context=False) == []
    assert drafter.propose(4, use_context=True) == [5, 4, 4]
    drafter.verified(1, 0)
    assert (drafter.context_stats.accepted, drafter.context_stats.rejected) == (0, 1)


def test_a_draft_not_verified_is_shadowed_and_teaches_the_estimate_without_counting():
    context = DraftCursor([1, 2, 3, 9, 1, 2], grows=True, capacity=16, min_match=2, first_draft=4)
    drafter = Drafter(None, context)
    assert context.expected_accepted(4) == 0.0  # an n-gram source earns its first drafts by shadowing
    proposal = drafter.peek(4, use_context=True)
    assert proposal.tokens == [3, 9, 1, 2]
    assert drafter.take(proposal, 0) == []  # not verified: followed
    for token in (3, 9, 7):  # the output agrees twice, then goes elsewhere
        drafter.observe(token)
    assert context.outcomes == deque([(4, 2)])
    assert (context.stats.accepted, context.stats.rejected) == (0, 0)  # no usage figure moves
    assert context.k == MIN_DRAFT  # 4 // 2: the length adapts to shadows too
    assert context.expected_accepted(4) == 2.0 and context.expected_accepted(1) == 1.0


def test_a_verified_draft_supersedes_a_shadow():
    prediction = DraftCursor(list(range(20)), grows=False, aligned_at_start=True, first_draft=8, trusted=True)
    assert prediction.expected_accepted(8) == 8.0  # trusted before any outcome
    prediction.shadow(0, 8)
    prediction.observe(0)
    prediction.anchor(1)  # a real draft from where the shadow had reached
    for token in (1, 2, 3):
        prediction.observe(token)
    prediction.verified(3, 3)
    assert prediction.outcomes == deque([(3, 3)]) and prediction.stats.accepted == 3


def test_the_estimate_extends_whole_runs_at_the_hit_rate_and_cuts_runs_that_ended():
    cursor = DraftCursor(list(range(100)), grows=False)
    cursor.verified(8, 8)
    cursor.verified(8, 2)
    rate = 10 / 11  # 10 accepted, 1 miss
    assert cursor.expected_accepted(4) == pytest.approx((4 + 2) / 2)
    longer = 8 + rate * (1 - rate ** 8) / (1 - rate)  # the whole run of 8, then 8 more at the rate
    assert cursor.expected_accepted(16) == pytest.approx((longer + 2) / 2)
    for _ in range(OUTCOMES_KEPT):  # only the recent outcomes count
        cursor.verified(4, 0)
    assert cursor.expected_accepted(16) == 0.0


@given(tokens, tokens)
def test_accepted_prefix_is_the_longest_agreeing_prefix(draft, sampled):
    n = accepted_prefix(draft, sampled)
    assert draft[:n] == sampled[:n]
    assert n == len(draft) or n == len(sampled) or draft[n] != sampled[n]


@settings(max_examples=200)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.lists(st.integers(0, 3), max_size=30))
def test_drafts_always_come_from_the_reference_in_order(reference, output):
    cursor = DraftCursor(reference, grows=False, aligned_at_start=True, first_draft=4)
    for t in output:
        draft = cursor.propose(4)
        assert len(draft) <= 4
        text = ",".join(map(str, reference))
        assert not draft or ",".join(map(str, draft)) in text
        cursor.observe(t)


def test_draft_budget_shrinks_with_load():
    budgets = [draft_budget(n) for n in range(1, 10)]
    assert budgets == sorted(budgets, reverse=True)
    assert budgets[0] >= 8 and draft_budget(9) == 0
    assert draft_budget(1) == MAX_DRAFT_ROWS > SHARED_DRAFT_ROWS == draft_budget(2) + 4  # alone it drafts the most
    assert NGRAM_MAX_DECODING < 8
