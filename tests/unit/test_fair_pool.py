"""backends/fair_pool.py (the preparation and report threads): users take turns, and one user holds a share.

Each test runs the pool on its own event loop with work that blocks until the test releases it,
so which job a free thread starts next is observed, not timed.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from coderapi.backends.fair_pool import FairPool, run_on, working_for
from coderapi.backends.prep_pool import PrepPool
from coderapi.errors import Overloaded, RateLimited


class Gate:
    """Work that records its start, then waits to be let through."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._open = threading.Event()
        self._lock = threading.Lock()

    def work(self, name: str) -> str:
        with self._lock:
            self.started.append(name)
        self._open.wait(5)
        return name

    def release(self) -> None:
        self._open.set()


async def submit(pool: PrepPool, owner, name: str, gate: Gate) -> asyncio.Task:
    async def run():
        with working_for(owner):
            return await pool.run(gate.work, name)

    task = asyncio.create_task(run())
    await asyncio.sleep(0.02)  # queued (or started) before the next one is submitted
    return task


def test_a_user_waiting_goes_before_a_flooding_users_next_job():
    async def main():
        pool, gate = PrepPool(threads=2, max_queued=16), Gate()
        try:
            flood = [await submit(pool, "attacker", f"a{i}", gate) for i in range(6)]
            other = await submit(pool, "user", "u", gate)
            assert gate.started == ["a0", "a1"]  # both threads busy with the flood
            gate.release()
            await asyncio.gather(*flood, other)
            return gate.started
        finally:
            gate.release()
            pool.close()

    started = asyncio.run(main())
    assert started.index("u") == 2, started  # the first free thread takes the other user's job


def test_users_take_turns_on_the_threads():
    async def main():
        pool, gate = PrepPool(threads=1, max_queued=16), Gate()
        try:
            tasks = [await submit(pool, "a", "a0", gate)]
            tasks += [await submit(pool, owner, f"{owner}{i}", gate) for owner in "ab" for i in (1, 2)]
            gate.release()
            await asyncio.gather(*tasks)
            return gate.started
        finally:
            gate.release()
            pool.close()

    assert asyncio.run(main()) == ["a0", "b1", "a1", "b2", "a2"]


def test_one_user_holds_at_most_its_share_and_the_others_still_get_in():
    async def main():
        pool, gate = PrepPool(threads=1, max_queued=16, max_queued_per_owner=2), Gate()
        try:
            held = [await submit(pool, "a", "a0", gate), await submit(pool, "a", "a1", gate)]
            with working_for("a"), pytest.raises(RateLimited) as refused:
                await pool.run(gate.work, "a2")
            other = await submit(pool, "b", "b0", gate)
            gate.release()
            return refused.value, await asyncio.gather(*held, other)
        finally:
            gate.release()
            pool.close()

    refused, answers = asyncio.run(main())
    assert refused.status_code == 429 and refused.code == "concurrency_limit_exceeded" and refused.retry_after == 1
    assert answers == ["a0", "a1", "b0"]


def test_a_cancelled_waiting_request_leaves_its_place_and_never_runs():
    async def main():
        pool, gate = PrepPool(threads=1, max_queued=1, max_queued_per_owner=2), Gate()
        try:
            running = await submit(pool, "a", "a0", gate)
            waiting = await submit(pool, "a", "a1", gate)
            with pytest.raises(Overloaded):  # threads + queue full
                await pool.run(gate.work, "x")
            waiting.cancel()
            await asyncio.sleep(0.02)
            again = await submit(pool, "a", "a2", gate)  # its place and the owner's share are free again
            gate.release()
            return await running, await again, gate.started, pool.pending
        finally:
            gate.release()
            pool.close()

    first, again, started, pending = asyncio.run(main())
    assert (first, again) == ("a0", "a2") and "a1" not in started and pending == 0


def test_work_runs_off_the_loop_and_its_error_reaches_the_caller():
    async def main():
        pool = PrepPool(threads=1, max_queued=1)
        try:
            thread = await pool.run(threading.get_ident)
            with pytest.raises(ValueError, match="bad schema"):
                await pool.run(lambda: (_ for _ in ()).throw(ValueError("bad schema")))
            return thread, threading.get_ident()
        finally:
            pool.close()

    worker, loop_thread = asyncio.run(main())
    assert worker != loop_thread


def test_closing_answers_the_waiting_requests_503():
    async def main():
        pool, gate = PrepPool(threads=1, max_queued=4), Gate()
        running = await submit(pool, "a", "a0", gate)
        waiting = await submit(pool, "b", "b0", gate)
        pool.close()
        with pytest.raises(Overloaded):
            await waiting
        gate.release()
        return await running, gate.started

    assert asyncio.run(main()) == ("a0", ["a0"])


def test_an_explicit_owner_and_the_work_named_in_refusals():
    async def main():
        pool, gate = FairPool(1, 2, 1, work="usage reports are being computed"), Gate()
        try:
            held = [asyncio.create_task(pool.run_for(owner, gate.work, f"r{owner}")) for owner in (7, 8)]
            await asyncio.sleep(0.02)
            with pytest.raises(RateLimited) as mine:  # user 7's share is taken
                await pool.run_for(7, gate.work, "again")
            held.append(asyncio.create_task(run_on(pool, 9, gate.work, "r9")))
            await asyncio.sleep(0.02)
            with pytest.raises(Overloaded) as full:  # the thread and both waiting places are taken
                await run_on(pool, 10, gate.work, "r10")
            gate.release()
            return mine.value, full.value, await asyncio.gather(*held), await run_on(None, 7, gate.work, "no pool")
        finally:
            gate.release()
            pool.close()

    mine, full, held, unpooled = asyncio.run(main())
    assert "usage reports are being computed at once (at most 1)" in mine.message and mine.status_code == 429
    assert "usage reports are being computed (3)" in full.message and full.status_code == 503
    assert (held, unpooled) == (["r7", "r8", "r9"], "no pool")
