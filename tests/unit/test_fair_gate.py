"""FairGate (engines/fair_gate.py): a fixed number of places, handed to owners in turn."""

from __future__ import annotations

import asyncio

import pytest

from coderapi.engines.fair_gate import FairGate


async def _holder(gate: FairGate, owner: str, served: list[str], release: asyncio.Event) -> None:
    async with gate.place(owner):
        served.append(owner)
        await release.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_freed_place_goes_to_the_owner_holding_fewest():
    gate, served = FairGate(2), []
    releases = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(_holder(gate, "flood", served, releases[i])) for i in range(4)]
    await _settle()
    tasks.append(asyncio.create_task(_holder(gate, "other", served, releases[4])))
    await _settle()
    assert served == ["flood", "flood"] and gate.waiting == 3 and gate.held == 2
    releases[0].set()  # a place frees: the other owner holds none, the flooder one
    await _settle()
    assert served == ["flood", "flood", "other"]
    releases[1].set()
    await _settle()
    assert served[-1] == "flood" and gate.waiting == 1
    for release in releases:
        release.set()
    await asyncio.gather(*tasks)
    assert gate.held == 0 and gate.waiting == 0


async def test_one_owner_is_served_in_arrival_order():
    gate, order = FairGate(1), []
    release = asyncio.Event()

    async def hold(i: int) -> None:
        async with gate.place(None):
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(hold(i)) for i in range(4)]
    await _settle()
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]


async def test_a_waiter_cancelled_leaves_no_trace_and_a_cancelled_holder_gives_its_place_back():
    gate, served = FairGate(1), []
    first, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_holder(gate, "a", served, first))
    await _settle()
    waiter = asyncio.create_task(_holder(gate, "b", served, release))
    await _settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.waiting == 0
    # Handed the place just as it is cancelled: the place is passed on, not lost.
    late = asyncio.create_task(_holder(gate, "c", served, release))
    after = asyncio.create_task(_holder(gate, "d", served, release))
    await _settle()
    first.set()  # "a" leaves: "c" is handed the place...
    await asyncio.sleep(0)
    late.cancel()  # ...and cancelled before it runs
    await asyncio.gather(holder, late, return_exceptions=True)
    release.set()
    await asyncio.wait_for(after, 1)
    assert "d" in served and gate.held == 0 and gate.waiting == 0


def test_a_gate_needs_a_place():
    with pytest.raises(ValueError):
        FairGate(0)
