"""SlotPool: which slot a new prompt gets (prefix reuse, LRU, adjacency, copies between slots)."""

from __future__ import annotations

from coderapi.engines.llama_cpp.prefix_cache import (
    ADJACENT_BONUS,
    COPY_MIN_GAIN,
    EVICT_COST_CAP,
    SlotPool,
    common_prefix_len,
)


def test_common_prefix_len_across_chunks():
    a = list(range(1000))
    assert common_prefix_len(a, a[:700] + [-1]) == 700
    assert common_prefix_len(a, []) == 0
    assert common_prefix_len(a, a) == 1000


def test_longest_cached_prefix_wins_and_last_token_is_recomputed():
    pool = SlotPool(4)
    pool.slots[2].tokens = list(range(50))
    got = pool.acquire(list(range(50)))
    assert got.slot.seq_id == 2 and got.source is None
    assert got.keep == 49  # the last prompt token is evaluated again for its logits


def test_without_a_match_the_least_recently_used_slot_is_taken():
    pool = SlotPool(3)
    for slot in pool.slots:
        slot.tokens = [999]
    pool.release(pool.slots[1])
    pool.release(pool.slots[0])
    pool.release(pool.slots[2])
    got = pool.acquire([1, 2, 3])
    assert got.slot.seq_id == 1 and got.keep == 0 and got.source is None


def test_a_slot_next_to_a_busy_one_wins_and_copies_a_short_prefix_from_elsewhere():
    pool = SlotPool(8)
    assert pool.acquire([5]).slot.seq_id == 0
    system = list(range(ADJACENT_BONUS // 2))  # a shared system prompt cached in idle slot 5
    pool.slots[5].tokens = system + [7, 7]
    got = pool.acquire(system + [8, 8])
    assert got.slot.seq_id == 1
    assert got.source is pool.slots[5] and got.keep == len(system)


def test_a_long_prefix_beats_adjacency_and_needs_no_copy():
    pool = SlotPool(8)
    pool.acquire([5])
    long_prefix = list(range(ADJACENT_BONUS * 3))
    pool.slots[5].tokens = long_prefix
    got = pool.acquire(long_prefix + [1])
    assert got.slot.seq_id == 5 and got.keep == len(long_prefix) and got.source is None


def test_a_busy_slot_lends_its_prefix_to_a_concurrent_request():
    pool = SlotPool(4)
    shared = list(range(200))
    first = pool.acquire(shared + [1])
    first.slot.tokens = shared + [1, 42, 43]  # being decoded right now
    got = pool.acquire(shared + [2])
    assert got.slot is not first.slot and got.slot.busy
    assert got.source is first.slot and got.keep == len(shared)


def test_a_small_gain_is_not_worth_a_copy():
    pool = SlotPool(4)
    first = pool.acquire([9])
    first.slot.tokens = list(range(COPY_MIN_GAIN - 1)) + [9]
    got = pool.acquire(list(range(COPY_MIN_GAIN - 1)) + [10])
    assert got.source is None and got.keep == 0


def test_a_prompt_sharing_only_the_system_prompt_takes_an_empty_slot_not_a_cached_conversation():
    pool = SlotPool(4)
    system = list(range(26))
    conversation = system + list(range(100, 160))
    first = pool.acquire(conversation)
    first.slot.tokens = conversation + [7, 7, 7]  # the prompt and the answer, cached when it ends
    pool.release(first.slot)
    other = pool.acquire(system + list(range(500, 900)))
    assert other.slot is not first.slot and other.keep == 0  # 26 shared tokens: not worth a copy
    pool.release(other.slot)
    again = pool.acquire(conversation)
    assert again.slot is first.slot and again.keep == len(conversation) - 1


def test_a_conversation_going_on_extends_its_own_slot():
    pool = SlotPool(3)
    turn1 = list(range(300))
    pool.slots[1].tokens = turn1 + [5, 5]  # its answer's last tokens are re-tokenized differently
    got = pool.acquire(turn1 + [6, 6, 6])
    assert got.slot.seq_id == 1 and got.keep == len(turn1)


def test_with_every_slot_holding_a_large_cache_the_least_recently_used_goes():
    pool = SlotPool(3)
    for size, slot in zip((EVICT_COST_CAP * 4, EVICT_COST_CAP + 1, EVICT_COST_CAP * 2), pool.slots):
        slot.tokens = [1000 + slot.seq_id] * size
    pool.release(pool.slots[2])
    pool.release(pool.slots[0])
    pool.release(pool.slots[1])
    assert pool.acquire([1, 2, 3]).slot.seq_id == 2
