"""`interleave` (backends/coder/fanout.py): a request's choices run a few at a time, their deltas
merged as they come. Scripted async streams, no engine."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.backends.coder.choice import ChoiceDelta
from coderapi.backends.coder.fanout import collect, interleave


class Gauge:
    """How many scripted streams are running now, and the most at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.closed: list[int] = []


async def choice(index: int, texts: list[str], gauge: Gauge, yields: list[int], fail_at: int | None = None):
    gauge.now += 1
    gauge.peak = max(gauge.peak, gauge.now)
    try:
        for i, text in enumerate(texts):
            for _ in range(yields[i % len(yields)]):  # let the other choices run in between
                await asyncio.sleep(0)
            if i == fail_at:
                raise RuntimeError(f"choice {index} failed")
            yield ChoiceDelta(index=index, text=text, finish_reason="stop" if i == len(texts) - 1 else None)
    finally:
        gauge.now -= 1
        gauge.closed.append(index)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.text("xyz", max_size=3), min_size=1, max_size=5), min_size=1, max_size=6),
    st.integers(1, 4),
    st.lists(st.integers(0, 3), min_size=1, max_size=5),
)
def test_every_delta_arrives_in_its_choices_order_with_at_most_max_active_running(scripts, max_active, yields):
    async def main():
        gauge = Gauge()
        streams = [choice(i, texts, gauge, yields) for i, texts in enumerate(scripts)]
        got = [d async for d in interleave(streams, max_active=max_active)]
        return gauge, got

    gauge, got = asyncio.run(main())
    for i, texts in enumerate(scripts):
        assert [d.text for d in got if d.index == i] == texts  # all of it, in order
    assert len(got) == sum(map(len, scripts))
    assert gauge.peak <= max_active  # never more choices at once than allowed
    assert sorted(gauge.closed) == list(range(len(scripts))) and gauge.now == 0


async def test_choices_really_run_side_by_side():
    gauge = Gauge()
    streams = [choice(i, ["a", "b", "c"], gauge, [1]) for i in range(4)]
    got = [d.index async for d in interleave(streams, max_active=2)]
    assert gauge.peak == 2
    assert set(got[:2]) == {0, 1}  # two choices run side by side, not one after the other
    assert sorted(got) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


async def test_a_failing_choice_raises_to_the_consumer_and_every_stream_is_closed():
    gauge = Gauge()
    streams = [choice(i, ["a", "b", "c"], gauge, [1], fail_at=1 if i == 1 else None) for i in range(3)]
    with pytest.raises(RuntimeError, match="choice 1 failed"):
        async for _ in interleave(streams, max_active=3):
            pass
    assert gauge.now == 0  # the others were stopped, not left running


async def test_a_consumer_that_stops_early_stops_the_choices():
    gauge = Gauge()
    streams = [choice(i, ["a"] * 50, gauge, [1]) for i in range(3)]
    merged = interleave(streams, max_active=2)
    async for _ in merged:
        break
    await merged.aclose()
    assert gauge.now == 0
    assert gauge.peak <= 2


async def test_one_choice_is_passed_through_and_collect_sums_each_choice():
    gauge = Gauge()
    deltas = [d async for d in interleave([choice(0, ["ab", "c"], gauge, [0])], max_active=4)]
    assert [d.text for d in deltas] == ["ab", "c"]

    async def two():
        yield ChoiceDelta(index=1, text="x")
        yield ChoiceDelta(index=0, text="y", finish_reason="length")
        yield ChoiceDelta(index=1, text="z", finish_reason="stop")

    results = await collect(two(), 2)
    assert [(r.text, r.finish_reason) for r in results] == [("y", "length"), ("xz", "stop")]


def test_a_slow_consumer_holds_the_choices_back():
    """The runners stop pulling once a few deltas wait for the consumer, so a stream read slowly
    does not have every choice's deltas (and an engine's tokens behind them) pile up in memory."""
    pulled = [0, 0, 0]

    async def endless(index: int):
        while True:
            pulled[index] += 1
            yield ChoiceDelta(index=index, text="x")
            await asyncio.sleep(0)

    async def main():
        merged = interleave([endless(i) for i in range(3)], max_active=3)
        taken = [await anext(merged) for _ in range(5)]
        await asyncio.sleep(0.2)  # the consumer stops reading: an unbounded queue would grow all along
        assert len(taken) == 5 and sum(pulled) <= 5 + 3 * 4 + 3  # taken + the queue + one in each runner's hand
        await asyncio.wait_for(merged.aclose(), 5)  # runners blocked on the full queue still end

    asyncio.run(main())
