"""The scheduler's rules between owners (users): slots in turn, sequences set aside for a waiting
owner, and a step's prompt rows shared. Pure snapshots in, plans out; see test_scheduler.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from coderapi.engines.llama_cpp.scheduler import WaitingView, plan_admission, plan_preemption, plan_step
from tests.unit.test_scheduler import decoding, prefilling


def test_admission_takes_owners_in_turn_the_fewest_running_first():
    # The flooder queued first; the other owner's one request still gets the next slot.
    waiting = [WaitingView(1, False, "flood"), WaitingView(2, False, "flood"), WaitingView(3, False, "flood"),
               WaitingView(4, False, "other")]
    assert plan_admission(waiting, [], n_free=1, running_owners=["flood", "flood"]).admit == (4,)
    assert plan_admission(waiting, [], n_free=3, running_owners=["flood"]).admit == (4, 1, 2)
    # Among owners with as many running, the one whose request waited longest goes first.
    assert plan_admission(waiting, [], n_free=2, running_owners=["other"]).admit == (1, 2)
    # A cancelled running sequence's slot is free, and its owner no longer counts it.
    assert plan_admission(waiting, [7], n_free=0, running_owners=["other"]).admit == (1,)


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=14),
    st.lists(st.sampled_from("abc"), max_size=6),
    st.integers(0, 8),
)
def test_admission_is_fair_and_keeps_each_owners_order(queued, running_owners, n_free):
    waiting = [WaitingView(i, cancelled, owner) for i, (owner, cancelled) in enumerate(queued)]
    plan = plan_admission(waiting, [], n_free, running_owners)
    live = [w for w in waiting if not w.cancelled]
    assert len(plan.admit) == min(n_free, len(live)) and len(set(plan.admit)) == len(plan.admit)
    owner_of = {w.id: w.owner for w in live}
    for owner in "abc":  # each owner's requests are admitted oldest first
        mine = [w.id for w in live if w.owner == owner]
        admitted = [i for i in plan.admit if owner_of[i] == owner]
        assert admitted == mine[: len(admitted)]
    # Balanced: no owner left waiting has fewer running than any admitted owner had when admitted.
    running = Counter(running_owners)
    for i in plan.admit:
        leftover = {w.owner for w in live if w.id not in plan.admit}
        assert all(running[owner_of[i]] <= running[o] for o in leftover)
        running[owner_of[i]] += 1


# -- preemption -------------------------------------------------------------------------------------


def running_of(owner, key, kv=100, **kw):
    return replace(decoding(key, kv=kv), owner=owner, **kw)


def test_a_waiting_owner_with_nothing_running_gets_the_flooders_cheapest_slot():
    running = [running_of("flood", k, kv=100 + 10 * k) for k in range(4)]
    waiting = [WaitingView(9, False, "flood"), WaitingView(10, False, "other")]
    assert plan_preemption(running, waiting, n_free=0) == (0,)  # the least in its KV
    # Two waiting requests of the other owner: it gets up to the flooder's count, no further.
    waiting.append(WaitingView(11, False, "other"))
    assert plan_preemption(running, waiting, n_free=0) == (0, 1)
    more = [*waiting, WaitingView(12, False, "other")]
    assert plan_preemption(running, more, n_free=0) == (0, 1)  # 2 and 2: no more


def test_nothing_is_set_aside_without_need():
    running = [running_of("flood", k) for k in range(4)]
    assert plan_preemption(running, [WaitingView(9, False, "flood")], n_free=0) == ()  # one owner
    assert plan_preemption(running, [WaitingView(9, False, "other")], n_free=1) == ()  # a slot is free
    assert plan_preemption(running, [WaitingView(9, True, "other")], n_free=0) == ()  # cancelled
    cancelling = [*running[:3], replace(running[3], cancelled=True)]  # its slot frees this step
    assert plan_preemption(cancelling, [WaitingView(9, False, "other")], n_free=0) == ()
    even = [running_of("a", 0), running_of("b", 1)]
    assert plan_preemption(even, [WaitingView(9, False, "c")], n_free=0) == ()  # 1 vs 0: a gap of one


def test_a_prompt_not_yet_begun_is_the_cheapest_to_set_aside():
    running = [running_of("flood", 0, kv=900), running_of("flood", 1, kv=40),
               replace(running_of("flood", 2, kv=0), next_token=None, prompt_len=6000, n_prompt_done=0),
               replace(running_of("flood", 3, kv=512), next_token=None, prompt_len=6000, n_prompt_done=512)]
    assert plan_preemption(running, [WaitingView(9, False, "other")], n_free=0) == (2,)


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 500)), min_size=1, max_size=8),
    st.lists(st.sampled_from("abcd"), max_size=10),
)
def test_preemption_never_sets_an_owner_below_a_waiting_one(running_spec, waiting_owners):
    running = [running_of(owner, key, kv=kv) for key, (owner, kv) in enumerate(running_spec)]
    waiting = [WaitingView(100 + i, False, owner) for i, owner in enumerate(waiting_owners)]
    keys = plan_preemption(running, waiting, n_free=0)
    assert len(set(keys)) == len(keys) <= len(waiting)
    after = Counter(v.owner for v in running if v.key not in keys)
    gained = Counter()
    for key in keys:  # each slot set aside goes to the waiting owner with the fewest running
        taker = min({w.owner for w in waiting if gained[w.owner] < waiting_owners.count(w.owner)},
                    key=lambda o: (after[o] + gained[o], waiting_owners.index(o)))
        gained[taker] += 1
    final = after + gained
    givers = {v.owner for v in running if v.key in keys}
    assert all(final[g] >= final[t] for g in givers for t in gained)  # nobody was set below a taker
    if keys == ():  # nothing set aside: no waiting owner is two or more short of the busiest
        busiest = max(Counter(v.owner for v in running).values())
        assert all(busiest - Counter(v.owner for v in running)[o] < 2 for o in waiting_owners)


# -- prompts of several owners ----------------------------------------------------------------------


def owned_prompt(owner, key, prompt_len, done=0):
    return replace(prefilling(key, prompt_len, done), owner=owner)


def test_a_users_short_prompt_is_evaluated_beside_another_users_long_ones():
    views = [owned_prompt("flood", 0, 6000), owned_prompt("flood", 1, 6000), owned_prompt("other", 2, 12)]
    plan = plan_step(views, n_batch=512)
    assert [(c.key, c.start, c.stop, c.wants_logits) for c in plan.prefill] == [(0, 0, 500, False), (2, 0, 12, True)]
    # Two long prompts of two owners: half the rows each, whoever came first.
    views = [owned_prompt("flood", 0, 6000), owned_prompt("flood", 1, 6000), owned_prompt("other", 2, 6000, 100)]
    plan = plan_step(views, n_batch=512)
    assert [(c.key, c.start, c.stop) for c in plan.prefill] == [(0, 0, 256), (2, 100, 356)]
    # Decode rows come first, and the rest is shared.
    plan = plan_step([decoding(5), *views], n_batch=512)
    assert [(c.key, c.stop - c.start) for c in plan.prefill] == [(0, 256), (2, 255)]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(1, 900), st.integers(0, 899)), min_size=1, max_size=8),
       st.integers(1, 600))
def test_prompt_rows_are_shared_max_min_fairly(prompts, n_batch):
    views = [owned_prompt(owner, key, n, min(done, n - 1)) for key, (owner, n, done) in enumerate(prompts)]
    plan = plan_step(views, n_batch=n_batch)
    assert sum(c.stop - c.start for c in plan.prefill) <= n_batch
    got, need = Counter(), Counter()
    for v in views:
        need[v.owner] += v.prompt_len - v.n_prompt_done
    for chunk in plan.prefill:
        view = views[chunk.key]
        assert chunk.start == view.n_prompt_done and chunk.start_pos == view.kv_len
        got[view.owner] += chunk.stop - chunk.start
    if sum(got.values()) < n_batch:
        assert got == need  # rows left over: every prompt got all it needs
    fair = n_batch // len(need)
    assert all(got[o] >= min(need[o], fair) for o in need)  # each owner at least its even share
    for owner in need:  # an owner's rows go to its prompts in admission order
        mine = [v for v in views if v.owner == owner]
        served = [c.key for c in plan.prefill if views[c.key].owner == owner]
        assert served == [v.key for v in mine][: len(served)]
