"""An engine's places (engines/capacity.py): all of them, and one owner's share."""

from __future__ import annotations

import pytest

from coderapi.engines.capacity import EngineCapacity
from coderapi.errors import Overloaded, RateLimited


def test_an_owner_at_its_share_is_refused_and_others_still_get_in():
    capacity = EngineCapacity(n_parallel=2, max_waiting=4, max_waiting_per_owner=1)
    for _ in range(3):
        capacity.enter("flood")
    with pytest.raises(RateLimited) as refused:
        capacity.check("flood")
    assert refused.value.code == "concurrency_limit_exceeded" and refused.value.retry_after == 1.0
    assert "at most 3 per user" in refused.value.message
    for owner in ("a", "b", None):
        capacity.enter(owner)
    assert capacity.held == 6
    with pytest.raises(Overloaded):  # the engine is full: everyone is refused
        capacity.enter("c")
    capacity.leave("flood")
    capacity.enter("c")
    assert capacity.held_by("flood") == 2 and capacity.held_by("c") == 1


def test_without_a_share_one_owner_may_take_every_place():
    capacity = EngineCapacity(n_parallel=1, max_waiting=2)
    for _ in range(3):
        capacity.enter("flood")
    with pytest.raises(Overloaded):
        capacity.check("other")


def test_owners_leave_no_trace_once_idle():
    capacity = EngineCapacity(n_parallel=1, max_waiting=0, max_waiting_per_owner=0)
    capacity.enter(7)
    with pytest.raises(RateLimited):
        capacity.enter(7)
    capacity.leave(7)
    assert capacity.held == 0 and capacity.held_by(7) == 0 and not capacity._by_owner


@pytest.mark.parametrize("args", [(0, 1, None), (1, -1, None), (1, 1, -1)])
def test_bad_sizes_are_refused(args):
    with pytest.raises(ValueError):
        EngineCapacity(*args)
