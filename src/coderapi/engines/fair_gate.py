"""A fixed number of places (the sequences a pool of replicas decodes at once), given to owners in turn.

Replicas queue what they cannot run yet first come, first served (llama-server's slots, vLLM's
scheduler), so requests sent to them as they come let one user's burst hold everyone else back until
it ran. With `upstream_slots` set, the remote engine sends at most that many at once and keeps the
rest here, where a freed place goes to the waiting owner holding the fewest (among equals, the one
whose request waited longest), as the embedded engine admits (llama_cpp/scheduler.py).

Touched only on the event loop that serves the engine.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Hashable

from coderapi.engines.capacity import EngineCapacity
from coderapi.engines.shared_slots import SharedSlots


class FairGate:
    def __init__(self, places: int) -> None:
        if places < 1:
            raise ValueError("a gate needs at least one place")
        self._free = places
        self._holding: Counter[Hashable] = Counter()
        self._waiting: dict[Hashable, deque[tuple[int, asyncio.Future]]] = {}
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    @property
    def held(self) -> int:
        return sum(self._holding.values())

    @asynccontextmanager
    async def place(self, owner: Hashable) -> AsyncIterator[None]:
        """Hold one place for the block, waiting for it in `owner`'s turn."""
        if self._free > 0 and not self._waiting:
            self._take(owner)
        else:
            await self._wait(owner)
        try:
            yield
        finally:
            self._give_back(owner)

    async def _wait(self, owner: Hashable) -> None:
        entry = (next(self._arrivals), asyncio.get_running_loop().create_future())
        self._waiting.setdefault(owner, deque()).append(entry)
        try:
            await entry[1]  # set by _hand_over, which counted the place as ours already
        except BaseException:
            if entry[1].done() and not entry[1].cancelled() and entry[1].exception() is None:
                self._give_back(owner)  # handed a place as we were cancelled: pass it on
            else:
                self._forget(owner, entry)
            raise

    def _take(self, owner: Hashable) -> None:
        self._free -= 1
        self._holding[owner] += 1

    def _give_back(self, owner: Hashable) -> None:
        self._free += 1
        self._holding[owner] -= 1
        if self._holding[owner] <= 0:
            del self._holding[owner]
        self._hand_over()

    def _forget(self, owner: Hashable, entry: tuple[int, asyncio.Future]) -> None:
        queue = self._waiting.get(owner)
        if queue is not None and entry in queue:
            queue.remove(entry)
            if not queue:
                del self._waiting[owner]

    def _hand_over(self) -> None:
        while self._free > 0 and self._waiting:
            owner = min(self._waiting, key=lambda o: (self._holding[o], self._waiting[o][0][0]))
            queue = self._waiting[owner]
            _, future = queue.popleft()
            if not queue:
                del self._waiting[owner]
            if future.done():  # its waiter was cancelled and is on its way out
                continue
            self._take(owner)
            future.set_result(None)


class SharedGate(FairGate):
    """Places that are leases won in Redis (shared_slots.py), for several gateways in front of one pool.

    While requests wait here, the gateway keeps one request of its own in Redis's queue; each lease it
    wins becomes a place, given to the waiting owner holding the fewest here (among equals, the one
    that waited longest). A place given back returns its lease to Redis, not to this gateway's next
    waiter, so a busy gateway cannot keep the places from another that waited longer. While Redis is
    down (open mode, `take` gives no lease), at most `slots` places here; closed mode fails the waiters."""

    def __init__(self, slots: int, shared: SharedSlots) -> None:
        super().__init__(slots)
        self._free = 0  # places come from leases won
        self._slots = slots
        self._shared = shared
        self._leases: list[str | None] = []  # one per place held here (None: taken while Redis was down)
        self._pump: asyncio.Task | None = None
        self._room = asyncio.Event()  # a place was given back

    async def _wait(self, owner: Hashable) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._win_leases())
        await super()._wait(owner)

    def _give_back(self, owner: Hashable) -> None:
        self._holding[owner] -= 1
        if self._holding[owner] <= 0:
            del self._holding[owner]
        self._shared.return_later(self._leases.pop())
        self._room.set()

    async def _win_leases(self) -> None:
        try:
            while self._waiting:
                if len(self._leases) >= self._slots:  # only while Redis is down: this gateway's own bound
                    self._room.clear()
                    await self._room.wait()
                    continue
                lease = await self._shared.take()
                self._leases.append(lease)
                self._free += 1
                self._hand_over()
                if self._free > 0:  # its waiter left meanwhile
                    self._free -= 1
                    self._shared.return_later(self._leases.pop())
        except Exception as exc:  # Redis down in closed mode (503): every waiter gets it
            for queue in self._waiting.values():
                for _, future in queue:
                    if not future.done():
                        future.set_exception(exc)
            self._waiting.clear()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()


class GatewayQueue:
    """What a gateway with `upstream_slots` runs requests through, in Coder mode (the remote engine)
    and pass-through alike: `slots` places at the replicas (`gate`: this gateway's own, or with
    `shared` the leases counted across the gateways on one Redis) and the requests that may hold or
    wait for one (`capacity`: `max_waiting` in all, `max_waiting_per_owner` of one owner's)."""

    def __init__(
        self, slots: int, max_waiting: int, max_waiting_per_owner: int | None = None, shared: SharedSlots | None = None
    ) -> None:
        self.capacity = EngineCapacity(slots, max_waiting, max_waiting_per_owner)
        self.shared = shared
        self.gate = FairGate(slots) if shared is None else SharedGate(slots, shared)

    @property
    def waiting(self) -> int:
        return self.gate.waiting

    def check(self, owner: Hashable) -> None:
        """Refuse now (503 all full, 429 the owner's share), counting nothing: an HTTP error at the call."""
        self.capacity.check(owner)

    @asynccontextmanager
    async def place(self, owner: Hashable) -> AsyncIterator[None]:
        """One place at the replicas for the block, waited for in `owner`'s turn."""
        self.capacity.enter(owner)  # re-checked: several requests may have passed `check` at once
        try:
            async with self.gate.place(owner):
                yield
        finally:
            self.capacity.leave(owner)

    async def close(self) -> None:
        if self.shared is not None:
            await self.gate.close()
            await self.shared.close()
