"""Credit leases: a gateway holds a slice of a key's credit in one transaction, and many requests
hold their worst-case cost from it in memory.

Without a lease each request costs one database transaction before it runs (its hold, see
`reservations`). With one, a key's first request holds up to `credit_lease_requests` times its
own worst-case cost, as one hold row (the lease), in that same transaction and under the same
checks; the key's next requests take their worst-case cost from the lease's free part here,
with no transaction, and give back what they did not spend where they end. The money stays
exact and global:
- a lease is a hold like any other: every gateway's balance and spending-limit checks count it;
- a request runs only if its worst-case cost fits in the lease's free part, so what a lease's
  requests can spend never exceeds the lease;
- a settled request's cost is debited from the balance and taken off the lease in one
  transaction (`crud.reservations.shrink_leases`), so nothing is counted twice.
What a lease may take (`reservations.lease_size`): at most a quarter of what the user and the
key have left, and only where that is at least two requests' worth; near the end of a balance
or a limit, requests hold exactly what they need, one transaction each, as before.

A lease is given back (its row released) when it has had no request for `LEASE_IDLE_SECONDS`,
when the gateway stops, or once it is spent, retired or older than its lifetime and its last
request ended. It is retired at once when its key's admission may have changed: another auth
epoch (a key or user changed anywhere, credit taken back; see `coderapi.store.auth_epoch`) or
another principal for its key. A gateway that dies leaves its leases to lapse with
`reservation_ttl_seconds`, as it leaves its holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from coderapi.money import to_money
from coderapi.services.account_types import Principal, UsageRecord
from coderapi.services.ledger_writer import LedgerWriter

LEASE_IDLE_SECONDS = 2.0  # a lease with no request for this long goes back to the balance
_TRIES = 3  # rounds of "wait for the lease being taken, then try it" before an exact hold


@dataclass(eq=False)
class Lease:
    reservation_id: int  # its hold row
    principal: Principal  # the key as admitted when it was taken (balance left out)
    epoch: int | None  # the auth epoch it was taken in
    free: Decimal  # what its requests may still hold
    usable_until: float  # monotonic seconds: no new request after this
    in_flight: int = 0
    idle_since: float | None = None
    retired: bool = False  # takes no new request; released once in_flight is 0
    released: bool = False


@dataclass(frozen=True)
class CostHold:
    """The worst-case cost an admitted request holds: a hold row of its own, or part of a lease."""

    amount: Decimal
    reservation_id: int | None = None
    lease: Lease | None = None


def _unbalanced(principal: Principal) -> Principal:
    return replace(principal, balance=None)


class CreditLeases:
    def __init__(
        self, writer: LedgerWriter, *, lease_requests: int, lease_seconds: float,
        idle_seconds: float = LEASE_IDLE_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._lease_requests = lease_requests  # 0: no leases, one exact hold per request
        self._lease_seconds = lease_seconds
        self._idle_seconds = idle_seconds
        self._now = clock
        self._by_key: dict[int, Lease] = {}
        self._taking: dict[int, asyncio.Future] = {}  # key id -> a lease being taken for it
        self._sweeper: asyncio.Task | None = None

    @property
    def leases(self) -> list[Lease]:
        return list(self._by_key.values())

    async def hold(
        self, principal: Principal, request_id: str, amount: Decimal, *, epoch: int | None, confirm_key: bool,
    ) -> CostHold:
        """Hold `amount` for the request: from the key's lease, from a new lease, or on its own.
        Raises the hold's refusal (QuotaExceeded, the key's), holding nothing."""
        amount = to_money(amount)
        if self._lease_requests <= 0 or amount <= 0:
            return await self._exact(principal, request_id, amount, confirm_key)
        for _ in range(_TRIES):
            held = self._from_lease(principal, amount, epoch)
            if held is not None:
                return held
            taking = self._taking.get(principal.key_id)
            if taking is None:
                return await self._take(principal, request_id, amount, epoch, confirm_key)
            await asyncio.shield(taking)  # another request is taking the key's lease: try that one
        return await self._exact(principal, request_id, amount, confirm_key)

    def end(self, record: UsageRecord, hold: CostHold | None) -> None:
        """The request ended costing `record.cost`: settle it (see `LedgerWriter.settle`) and give
        its lease back what it held and did not spend (`hold` None: it held nothing)."""
        lease = hold.lease if hold is not None else None
        if lease is None:
            self._writer.settle(record, hold.reservation_id if hold is not None else None)
            return
        self._writer.settle(record, None, lease.reservation_id)
        lease.free += hold.amount - to_money(record.cost)
        lease.in_flight -= 1
        if lease.in_flight == 0:
            lease.idle_since = self._now()
            if lease.retired:
                self._release(lease)

    async def drain(self) -> None:
        """Waits until every settlement queued so far is committed."""
        await self._writer.drain()

    async def close(self) -> None:
        """Gives every lease back (the requests have ended: see `Services.close`)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for key_id in list(self._by_key):
            self._retire(self._by_key.pop(key_id))

    # -- internals --------------------------------------------------------------------------

    async def _exact(self, principal: Principal, request_id: str, amount: Decimal, confirm_key: bool) -> CostHold:
        reservation_id = await self._writer.reserve(principal, request_id, amount, confirm_key=confirm_key)
        return CostHold(amount, reservation_id=reservation_id)

    def _from_lease(self, principal: Principal, amount: Decimal, epoch: int | None) -> CostHold | None:
        lease = self._by_key.get(principal.key_id)
        if lease is None:
            return None
        if lease.epoch != epoch or lease.principal != _unbalanced(principal) or self._now() >= lease.usable_until:
            self._retire(self._by_key.pop(principal.key_id))
            return None
        if lease.free < amount:
            return None  # spent: the next lease taken for the key retires it
        lease.free -= amount
        lease.in_flight += 1
        return CostHold(amount, lease=lease)

    async def _take(
        self, principal: Principal, request_id: str, amount: Decimal, epoch: int | None, confirm_key: bool,
    ) -> CostHold:
        taking = asyncio.get_running_loop().create_future()
        self._taking[principal.key_id] = taking
        try:
            old = self._by_key.pop(principal.key_id, None)
            if old is not None:
                self._retire(old)  # released first in the batch: the new lease sees its money
            reservation_id, granted = await self._writer.lease(
                principal, f"lease-{request_id}", amount, amount * self._lease_requests, confirm_key=confirm_key,
            )
        finally:
            del self._taking[principal.key_id]
            taking.set_result(None)
        if granted <= amount:  # not enough left for a lease: an exact hold
            return CostHold(amount, reservation_id=reservation_id)
        lease = Lease(
            reservation_id, _unbalanced(principal), epoch, free=granted - amount,
            usable_until=self._now() + self._lease_seconds, in_flight=1,
        )
        self._by_key[principal.key_id] = lease
        self._start_sweeper()
        return CostHold(amount, lease=lease)

    def _retire(self, lease: Lease) -> None:
        lease.retired = True
        if lease.in_flight == 0:
            self._release(lease)

    def _release(self, lease: Lease) -> None:
        if not lease.released:
            lease.released = True
            self._writer.release(lease.reservation_id)

    def _start_sweeper(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sweeper is None or self._sweeper.done() or self._sweeper.get_loop() is not loop:
            self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Gives back leases idle for `idle_seconds` or past their lifetime; ends with the last."""
        while self._by_key:
            await asyncio.sleep(self._idle_seconds / 2)
            now = self._now()
            for key_id, lease in list(self._by_key.items()):
                idle = lease.in_flight == 0 and lease.idle_since is not None and now - lease.idle_since >= self._idle_seconds
                if idle or now >= lease.usable_until:
                    self._retire(self._by_key.pop(key_id))
