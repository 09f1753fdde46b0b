"""The pure scheduler (engines/llama_cpp/scheduler.py): admission, draft limits and step plans
(its rules between owners: test_scheduler_owners.py).

Plain snapshots in, a plan out: no model, no thread. The hypothesis tests draw whole running
sets (decoding and prefilling sequences, drafts, budgets) and check the rules every plan keeps.
"""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.engines.llama_cpp.draft_value import DraftOffer
from coderapi.engines.llama_cpp.drafting import DraftCursor, Drafter
from coderapi.engines.llama_cpp.scheduler import (
    ExactRows,
    MAX_DRAFT_ROWS,
    NGRAM_MAX_DECODING,
    SeqView,
    WaitingView,
    draft_budget,
    plan_admission,
    plan_step,
)


def decoding(key: int, *, kv: int = 10, n_generated: int = 1, max_tokens: int = 100, reproducible=False, drafts=True):
    return SeqView(key, prompt_len=kv - n_generated + 1, n_prompt_done=kv - n_generated + 1, kv_len=kv,
                   next_token=1000 + key, n_generated=n_generated, max_tokens=max_tokens,
                   reproducible=reproducible, drafts=drafts)


def constant(rows: int) -> ExactRows:
    """The same invariant rows at any context length."""
    return ExactRows(((1 << 30, rows),))


def source(proposals: dict[int, list[int]], calls: list | None = None):
    """A DraftSource answering from fixed proposals, longer than asked on purpose: the plan cuts."""

    def drafts(key: int, limit: int, use_context: bool) -> DraftOffer:
        if calls is not None:
            calls.append((key, limit, use_context))
        return DraftOffer(proposals.get(key, []))

    return drafts


def prefilling(key: int, prompt_len: int, done: int = 0, reproducible=False):
    return SeqView(key, prompt_len=prompt_len, n_prompt_done=done, kv_len=done, next_token=None,
                   n_generated=0, max_tokens=100, reproducible=reproducible)


# -- hypothesis: any running set -------------------------------------------------------------------


@st.composite
def running_sets(draw):
    n = draw(st.integers(1, 8))
    views = []
    for key in range(n):
        reproducible = draw(st.booleans())
        if draw(st.booleans()):
            n_generated = draw(st.integers(1, 60))
            kv = draw(st.integers(n_generated, 300))
            views.append(decoding(key, kv=kv, n_generated=n_generated, max_tokens=draw(st.integers(n_generated, 80)),
                                  reproducible=reproducible, drafts=draw(st.booleans())))
        else:
            prompt_len = draw(st.integers(1, 400))
            views.append(prefilling(key, prompt_len, draw(st.integers(0, prompt_len - 1)), reproducible))
    order = draw(st.permutations(range(n)))  # keys need not follow admission order
    views = [views[i] for i in order]
    drafts = {v.key: draw(st.lists(st.integers(0, 50), max_size=40)) for v in views if v.decoding and v.drafts}
    n_batch = draw(st.integers(n + 1, 600))
    n_ctx = draw(st.integers(310, 400))
    found = draw(st.lists(st.integers(1, 12), max_size=4))
    exact_rows = draw(st.one_of(st.none(), st.just(ExactRows(tuple((64 << i, r) for i, r in enumerate(found))))))
    prompt_cap = draw(st.one_of(st.none(), st.integers(1, 600)))  # prompt rows while sequences decode
    return views, drafts, n_batch, n_ctx, exact_rows, prompt_cap


@settings(max_examples=300, deadline=None)
@given(running_sets(), st.sampled_from([1, 4]))
def test_every_plan_keeps_the_rules(case, row_group):
    views, drafts, n_batch, n_ctx, exact_rows, prompt_cap = case
    before = copy.deepcopy((views, drafts))
    calls = []
    plan = plan_step(views, n_batch, n_ctx, exact_rows, source(drafts, calls), row_group, prompt_cap)
    assert (views, drafts) == before  # inputs untouched
    assert plan == plan_step(views, n_batch, n_ctx, exact_rows, source(drafts), row_group, prompt_cap)  # deterministic
    assert plan.n_rows <= n_batch  # the budget is never exceeded
    uncut = plan_step(views, n_batch, n_ctx, exact_rows, source(drafts), 1, prompt_cap)
    if plan != uncut:  # drafts cut only to reach whole groups, in a step without prompt rows
        assert row_group > 1 and not plan.prefill and plan.n_rows % row_group == 0
        assert uncut.n_rows - row_group < plan.n_rows < uncut.n_rows
    has_drafter = {v.key: v.drafts for v in views}
    assert all(limit >= 1 and has_drafter[key] for key, limit, _ in calls)  # asked only when it may draft

    decoders = [v for v in views if v.decoding]
    assert [p.key for p in plan.decode] == [v.key for v in decoders]  # every decoder, in running order
    rows = len(decoders)
    for part, view in zip(plan.decode, decoders):
        assert (part.token, part.start_pos) == (view.next_token, view.kv_len)
        assert list(part.draft) == drafts.get(view.key, [])[: len(part.draft)]  # a prefix of the proposal
        if part.draft:
            assert len(part.draft) <= view.max_tokens - view.n_generated - 1  # each could be output
            assert view.kv_len + len(part.draft) + 2 <= n_ctx  # room for all of it in the context
            rows += len(part.draft)
            if exact_rows is not None and view.reproducible:
                # decode rows so far stay within the rows invariant at the step's KV length
                assert rows <= exact_rows.at(view.kv_len + len(part.draft) + 1)
    assert sum(len(p.draft) for p in plan.decode) <= draft_budget(len(decoders))

    prefill = [v for v in views if not v.decoding]
    prompt_rows = sum(c.stop - c.start for c in plan.prefill)
    prompt_budget = n_batch - rows
    if decoders and prompt_cap is not None:
        prompt_budget = min(prompt_budget, prompt_cap)  # while sequences decode, prompts get the cap at most
    assert prompt_rows <= prompt_budget
    by_key = {v.key: v for v in views}
    assert [c.key for c in plan.prefill] == [v.key for v in prefill][: len(plan.prefill)]  # admission order
    for i, chunk in enumerate(plan.prefill):
        view = by_key[chunk.key]
        assert (chunk.start, chunk.start_pos) == (view.n_prompt_done, view.kv_len)
        assert chunk.start < chunk.stop <= view.prompt_len
        assert chunk.wants_logits == (chunk.stop == view.prompt_len)
        end = view.prompt_len
        if view.reproducible and len(views) == 1 and view.n_prompt_done < end - 1:
            end -= 1  # the split rule: the last prompt token waits for a step of its own
        last = i == len(plan.prefill) - 1
        assert chunk.stop == end or (last and prompt_rows == prompt_budget)  # only the budget cuts, and only the last
    if prompt_rows < prompt_budget:
        assert len(plan.prefill) == len(prefill)  # rows left over: every prompt got its chunk


# -- examples of each rule -------------------------------------------------------------------------


def test_decode_rows_come_first_and_prompts_share_what_is_left_in_admission_order():
    views = [prefilling(5, 300), decoding(2), prefilling(0, 300), decoding(7)]
    plan = plan_step(views, n_batch=400)
    assert [p.key for p in plan.decode] == [2, 7]
    assert [(c.key, c.start, c.stop, c.wants_logits) for c in plan.prefill] == [(5, 0, 300, True), (0, 0, 98, False)]
    assert plan.n_rows == 400
    tight = plan_step(views, n_batch=3)
    assert [p.key for p in tight.decode] == [2, 7] and [(c.key, c.stop) for c in tight.prefill] == [(5, 1)]


def test_prompts_beside_decoding_streams_get_the_cap_and_alone_the_whole_step():
    views = [prefilling(5, 300), decoding(2), prefilling(0, 300), decoding(7)]
    capped = plan_step(views, n_batch=512, prompt_rows_while_decoding=100)
    assert [(c.key, c.start, c.stop) for c in capped.prefill] == [(5, 0, 100)]  # the oldest prompt first
    assert capped.n_rows == 102  # the two decoding streams' tokens, then 100 prompt rows
    prompts_only = [prefilling(5, 300), prefilling(0, 300)]
    alone = plan_step(prompts_only, n_batch=512, prompt_rows_while_decoding=100)
    assert [(c.key, c.stop) for c in alone.prefill] == [(5, 300), (0, 212)]  # nothing decodes: every row
    roomy = plan_step(views, n_batch=400, prompt_rows_while_decoding=1000)
    assert roomy.n_rows == 400  # a cap above the step's room changes nothing


def test_a_reproducible_request_alone_evaluates_its_last_prompt_token_in_a_step_of_its_own():
    plan = plan_step([prefilling(0, 50, reproducible=True)], n_batch=512)
    assert [(c.start, c.stop, c.wants_logits) for c in plan.prefill] == [(0, 49, False)]
    plan = plan_step([prefilling(0, 50, done=49, reproducible=True)], n_batch=512)
    assert [(c.start, c.stop, c.wants_logits) for c in plan.prefill] == [(49, 50, True)]
    # Sampled without a seed, or beside another sequence: the whole prompt at once.
    assert plan_step([prefilling(0, 50)], n_batch=512).prefill[0].stop == 50
    beside = plan_step([prefilling(0, 50, reproducible=True), decoding(1)], n_batch=512)
    assert beside.prefill[0].stop == 50


def test_drafts_are_cut_to_the_shared_budget_in_running_order():
    views = [decoding(k) for k in range(8)]  # 8 decoding: draft_budget(8) == 4 rows in all
    plan = plan_step(views, n_batch=512, drafts=source({k: [1, 2, 3] for k in range(8)}))
    assert [len(p.draft) for p in plan.decode] == [3, 1, 0, 0, 0, 0, 0, 0]
    assert draft_budget(8) == 4


def test_exact_rows_take_the_fewest_rows_found_up_to_the_context_length():
    rows = ExactRows(((64, 3), (128, 7), (256, 1), (512, 4)))
    assert [rows.at(n) for n in (1, 64, 65, 128, 129, 256, 400, 512, 513)] == [3, 3, 3, 3, 1, 1, 1, 1, 1]
    assert ExactRows(((64, 5), (128, 5))).at(100) == 5 and ExactRows(((64, 5), (128, 5))).at(129) == 1
    assert ExactRows(()).at(1) == 1  # nothing probed: one row
    probed_through = ExactRows(((64, 7), (512, 7), (1024, 3)), beyond=3)
    assert [probed_through.at(n) for n in (64, 600, 1024, 5000)] == [7, 3, 3, 3]


def test_drafts_are_capped_by_max_tokens_context_and_exact_rows():
    proposal = source({0: list(range(20))})
    assert plan_step([decoding(0, n_generated=5, max_tokens=9)], 512, drafts=proposal).decode[0].draft == (0, 1, 2)
    assert plan_step([decoding(0, kv=95)], 512, n_ctx_per_seq=100, drafts=proposal).decode[0].draft == (0, 1, 2)
    three = ExactRows(((64, 3),))
    greedy = plan_step([decoding(0, reproducible=True)], 512, exact_rows=three, drafts=proposal)
    assert greedy.decode[0].draft == (0, 1)  # 3 rows: the next token and two drafts
    long = plan_step([decoding(0, kv=70, reproducible=True)], 512, exact_rows=three, drafts=proposal)
    assert long.decode[0].draft == ()  # past the probed lengths: one row, no draft
    sampled = plan_step([decoding(0)], 512, exact_rows=three, drafts=proposal)
    assert len(sampled.decode[0].draft) == 20  # unseeded sampling is not reproducible anyway
    # A long draft would run past the probed lengths (one row there); a shorter one stays within them.
    wide = ExactRows(((64, 65),))
    near_the_end = plan_step([decoding(0, kv=30, reproducible=True)], 512, exact_rows=wide,
                             drafts=source({0: list(range(80))}))
    assert len(near_the_end.decode[0].draft) == 33  # 34 rows reach 64 tokens cached


def test_a_step_of_decode_rows_keeps_to_whole_groups_of_four_when_its_drafts_allow():
    def rows(plan):
        return [p.n_rows for p in plan.decode]

    alone = plan_step([decoding(0)], 512, drafts=source({0: list(range(80))}), row_group=4)
    assert rows(alone) == [64] and MAX_DRAFT_ROWS == 64  # 65 rows -> 64
    assert rows(plan_step([decoding(0)], 512, drafts=source({0: list(range(40))}), row_group=4)) == [40]  # 41 -> 40
    assert rows(plan_step([decoding(0)], 512, drafts=source({0: list(range(20))}), row_group=4)) == [20]  # 21 -> 20
    assert rows(plan_step([decoding(0)], 512, drafts=source({0: list(range(6))}), row_group=4)) == [4]  # 7 -> 4
    assert rows(plan_step([decoding(0)], 512, drafts=source({0: [1, 2]}), row_group=4)) == [3]  # one group or less: kept
    # Two sequences: the last drafts are cut first, the first sequence's only when the last has too few.
    two = plan_step([decoding(0), decoding(1)], 512, drafts=source({0: [1] * 8, 1: [2]}), row_group=4)
    assert rows(two) == [7, 1]  # 11 -> 8: the last one's draft, then two of the first's
    cut = plan_step([decoding(0), decoding(1)], 512, drafts=source({0: [1] * 9, 1: [2] * 3}), row_group=4)
    assert rows(cut) == [10, 2]  # 14 -> 12: two cut from the last
    # Too few drafts to reach a whole group: nothing is cut (the extra pass is paid anyway).
    few = [decoding(k) for k in range(5)] + [decoding(9, drafts=False)]
    assert rows(plan_step(few, 512, drafts=source({0: [1]}), row_group=4)) == [2, 1, 1, 1, 1, 1]
    # A step that also evaluates a prompt keeps its drafts: the prompt's rows outnumber any remainder.
    mixed = plan_step([decoding(0), prefilling(1, 50)], 512, drafts=source({0: list(range(6))}), row_group=4)
    assert rows(mixed) == [7] and mixed.prefill
    # Reproducible requests are cut further, never lengthened: still within the exact rows.
    exact = plan_step([decoding(0, reproducible=True)], 512, exact_rows=constant(7),
                      drafts=source({0: list(range(20))}), row_group=4)
    assert rows(exact) == [4]


def test_drafts_are_asked_for_with_the_rows_left_and_context_drafts_only_under_light_load():
    views = [decoding(k, reproducible=k == 0) for k in range(3)] + [decoding(9, drafts=False)]
    calls = []
    plan_step(views, n_batch=512, exact_rows=constant(6), drafts=source({}, calls))
    assert calls == [(0, 2, False), (1, draft_budget(4), False), (2, draft_budget(4), False)]  # 4 decode > 2
    calls.clear()
    plan_step(views, n_batch=512, exact_rows=constant(6), drafts=source({0: [5], 1: [5] * 30}, calls))
    assert [c[:2] for c in calls] == [(0, 2), (1, draft_budget(4) - 1)]  # 1 took the rest: 2 is not asked
    calls.clear()
    plan_step(views[:NGRAM_MAX_DECODING], n_batch=512, drafts=source({}, calls))
    assert [c[2] for c in calls] == [True, True]
    calls.clear()
    plan_step([decoding(0, n_generated=9, max_tokens=10)], n_batch=512, drafts=source({}, calls))
    assert calls == []  # no room for a draft: not even asked


# -- the worker's draft protocol equals drafting inside the plan (as the scheduler used to) ------------


def _old_drafts(views, drafters, n_batch, n_ctx, exact_rows):
    """The former plan_step's draft loop: `propose` called in turn with the limit left."""
    dec = [v for v in views if v.decoding]
    spare, rows, out = min(draft_budget(len(dec)), n_batch - len(dec)), len(dec), []
    for v in dec:
        draft = []
        if v.drafts and spare > 0:
            limit = min(spare, v.max_tokens - v.n_generated - 1, n_ctx - v.kv_len - 2)
            if exact_rows is not None and v.reproducible:
                limit = min(limit, exact_rows - rows)
            draft = drafters[v.key].propose(limit, use_context=len(dec) <= NGRAM_MAX_DECODING)
            spare, rows = spare - len(draft), rows + len(draft)
        out.append(draft)
    return out


def _new_drafts(views, drafters, n_batch, n_ctx, exact_rows):
    """What the worker does now: plan with a read-only peek, then take the drafts the plan used."""
    proposals = {}

    def peek(key, limit, use_context):
        proposals[key] = p = drafters[key].peek(limit, use_context=use_context)
        return DraftOffer(p.tokens if p else [])

    plan = plan_step(views, n_batch, n_ctx, None if exact_rows is None else constant(exact_rows), peek)
    for part in plan.decode:
        if part.key in drafters:
            drafters[part.key].take(proposals.get(part.key), len(part.draft))
    return [list(p.draft) for p in plan.decode]


def _drafter(prediction, prompt):
    return Drafter(DraftCursor(prediction, grows=False, aligned_at_start=True, max_draft=32, first_draft=8),
                   DraftCursor(prompt, grows=True, capacity=64, min_match=1, max_match=4, first_draft=4))


def _state(d: Drafter):
    cursors = [(c.ptr, c.floor, c.k, c.n, c.stats) for c in (d.prediction, d.context)]
    return cursors, "prediction" if d._last is d.prediction else "context" if d._last is d.context else None


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 10), st.data())
def test_peeking_before_the_plan_drafts_exactly_as_proposing_inside_it_did(n, data):
    small = st.lists(st.integers(0, 4), min_size=1, max_size=24)
    specs = [(data.draw(small), data.draw(small)) for _ in range(n)]
    old = {k: _drafter(p, q) for k, (p, q) in enumerate(specs)}
    new = {k: _drafter(p, q) for k, (p, q) in enumerate(specs)}
    exact_rows = data.draw(st.one_of(st.none(), st.integers(1, 10)))
    for _ in range(data.draw(st.integers(1, 6))):  # a few steps: cursors move, anchors are kept or lost
        views = [decoding(k, reproducible=k % 2 == 0) for k in range(n)]
        drafts = _old_drafts(views, old, 64, 1 << 20, exact_rows)
        assert _new_drafts(views, new, 64, 1 << 20, exact_rows) == drafts
        for k in range(n):
            assert _state(old[k]) == _state(new[k])
            accepted = data.draw(st.integers(0, len(drafts[k])))
            token = data.draw(st.integers(0, 4))
            for drafters in (old, new):
                drafters[k].verified(len(drafts[k]), accepted)
                drafters[k].observe(token)


def test_predictions_draft_under_load_and_context_drafts_only_while_few_decode():
    def drafter(prediction):
        p = DraftCursor(prediction, grows=False, aligned_at_start=True, first_draft=8) if prediction else None
        return Drafter(p, DraftCursor([7, 8, 9, 10, 11, 7], grows=True, capacity=100, min_match=1, first_draft=8))

    assert _new_drafts([decoding(0)], {0: drafter(None)}, 512, 1 << 20, None) == [[8, 9, 10, 11, 7]]
    drafters = {k: drafter([8, 9, 10, 11, 12] if k < NGRAM_MAX_DECODING else None) for k in range(4)}
    drafts = _new_drafts([decoding(k) for k in range(4)], drafters, 512, 1 << 20, None)
    assert [len(d) for d in drafts] == [5, 5, 0, 0]  # predictions still draft; n-grams do not


# -- admission --------------------------------------------------------------------------------------


def test_admission_drops_the_cancelled_frees_their_slots_and_admits_the_oldest():
    waiting = [WaitingView(10, False), WaitingView(11, True), WaitingView(12, False), WaitingView(13, False)]
    plan = plan_admission(waiting, cancelled_running=[3], n_free=1)
    assert plan.drop == (11,) and plan.release == (3,)
    assert plan.admit == (10, 12)  # one free slot and the cancelled one's: the two oldest live
    assert plan_admission(waiting, [], n_free=0).admit == ()
    assert plan_admission([], [], n_free=4).admit == ()


@given(st.lists(st.booleans(), max_size=12), st.integers(0, 8), st.integers(0, 4))
def test_admission_is_fifo_and_never_overfills_the_slots(cancelled, n_free, n_cancelled_running):
    waiting = [WaitingView(i, c) for i, c in enumerate(cancelled)]
    plan = plan_admission(waiting, list(range(n_cancelled_running)), n_free)
    live = [w.id for w in waiting if not w.cancelled]
    assert list(plan.admit) == live[: n_free + n_cancelled_running]
    assert set(plan.drop) == {w.id for w in waiting if w.cancelled}
