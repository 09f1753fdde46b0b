"""Group commit for the money path: every hold and settlement a gateway has queued goes to the
database in one transaction (`CostReservations.apply`), one transaction at a time.

Nothing waits to fill a batch: when a transaction ends, the next one takes whatever queued
meanwhile. Alone, a request costs one transaction to hold its cost, as before; under load, one
transaction serves tens of requests, and the SQLite write lock is no longer fought over by
threads. Holds stay exact and global: each batch is checked with the users' rows locked, against
every hold in the database (other gateways' included).

Settlements are journaled on disk (`UsageJournal`) before they are queued, and acknowledged in
the journal once committed, so a gateway killed with settlements queued loses none: the next
start replays them (`recover`). A hold whose request was cancelled while it was queued is
released at once rather than left to lapse.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from coderapi.errors import ServiceUnavailable
from coderapi.money import to_money
from coderapi.services.account_types import Principal, UsageRecord
from coderapi.services.reservations import CostReservations, Hold, Settlement
from coderapi.services.usage_journal import Segment, UsageJournal

log = logging.getLogger("coderapi.ledger")

MAX_BATCH = 256  # holds and settlements per transaction
RETRY_DELAYS = (0.5, 1, 2, 4, 8)  # seconds between tries while the database is unavailable (then 8 s)
CLOSE_TIMEOUT = 10.0  # seconds a shutdown waits for the queue to reach the database
# Settlements with no hold queued wait this long (once) for one to share their transaction: a
# client sending its requests one after the other then pays for one transaction per request, not
# for its previous request's settlement too. Money stays exact: until it commits, the settled
# request's hold still counts, and a hold in the same transaction sees the money the settlement
# frees (settlements go first). The usage row lands that much later; the journal keeps it meanwhile.
SETTLEMENT_WAIT = 0.05


class LedgerWriter:
    def __init__(self, ledger: CostReservations, journal: UsageJournal | None = None) -> None:
        self._ledger = ledger
        self._journal = journal
        self._holds: list[tuple[Hold, asyncio.Future]] = []
        self._settlements: list[tuple[Settlement, Segment | None]] = []
        self._wake: asyncio.Event | None = None
        self._hold_queued: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # The writer's own database thread: its transactions run one at a time anyway, and a
        # warm thread of its own (with its pooled connection) answers sooner than the shared
        # default executor, busy with other work under load. Made on first use.
        self._thread: ThreadPoolExecutor | None = None

    async def reserve(self, principal: Principal, request_id: str, amount: Decimal, *, confirm_key: bool) -> int:
        """Hold `amount` for the request (see `CostReservations`); the hold's id, or its error."""
        hold = await self._queue(Hold(principal, request_id, to_money(amount), confirm_key=confirm_key))
        return hold.result

    async def lease(
        self, principal: Principal, request_id: str, amount: Decimal, want: Decimal, *, confirm_key: bool,
    ) -> tuple[int, Decimal]:
        """Hold a credit lease of up to `want` for the key, or only the request's `amount` when
        that is all there is room for (see `reservations.lease_size`): the hold's id and what it
        holds, or the request's refusal."""
        hold = Hold(principal, request_id, to_money(amount), confirm_key=confirm_key, want=to_money(want))
        await self._queue(hold)
        return hold.result, hold.granted

    async def _queue(self, hold: Hold) -> Hold:
        future = asyncio.get_running_loop().create_future()
        self._holds.append((hold, future))
        self._kick()
        self._hold_queued.set()
        return await future

    def settle(self, record: UsageRecord, reservation_id: int | None, lease_id: int | None = None) -> None:
        """Journal the record, then queue it; it is committed with the next batch."""
        segment = None
        if self._journal is not None:
            try:
                segment = self._journal.append(record, reservation_id, lease_id)
            except OSError:  # a full or read-only disk: still written to the database, unjournaled
                log.exception("could not journal the usage of %s", record.request_id)
        self._settlements.append((Settlement(record, reservation_id, lease_id=lease_id), segment))
        self._kick()

    def release(self, reservation_id: int) -> None:
        """Drop a hold (a lease given back): committed with the next batch."""
        self._settlements.append((Settlement(None, reservation_id), None))
        self._kick()

    async def drain(self) -> None:
        """Waits until everything queued so far is committed (tests, shutdown)."""
        while self._idle is not None and not self._idle.is_set():
            await self._idle.wait()

    async def recover(self) -> int:
        """Settle what gateways that died left in the journal; the number of records replayed."""
        if self._journal is None:
            return 0
        replayed = 0
        for segment, entries in await asyncio.to_thread(self._journal.orphans):
            for start in range(0, len(entries), MAX_BATCH):
                batch = [Settlement(record, hold, replayed=True, lease_id=lease)
                         for record, hold, lease in entries[start:start + MAX_BATCH]]
                await self._in_db_thread(self._ledger.apply, batch, [])
            # Its gateway is gone (the segment was unlocked): so are its credit leases' requests.
            leases = sorted({lease for _, _, lease in entries if lease is not None})
            if leases:
                await self._in_db_thread(self._ledger.apply, [Settlement(None, lease) for lease in leases], [])
            replayed += len(entries)
            self._journal.committed(segment, segment.written)
            log.warning("replayed %d usage records from %s", len(entries), segment.path.name)
        return replayed

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Commits what is queued (for at most `timeout` s: the journal keeps the rest)."""
        try:
            await asyncio.wait_for(self.drain(), timeout)
        except asyncio.TimeoutError:
            log.warning("the database did not take the queued usage in %.0f s; the journal keeps it", timeout)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._thread is not None:
            self._thread.shutdown(wait=False)  # a transaction still running ends on its own
            self._thread = None
        if self._journal is not None:
            self._journal.close()

    async def _in_db_thread(self, function, *args):
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coderapi-ledger")
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def _kick(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake, self._idle, self._hold_queued = asyncio.Event(), asyncio.Event(), asyncio.Event()
            self._task = loop.create_task(self._run())
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._holds or self._settlements:
                if not self._holds and failures == 0:
                    await self._wait_for_a_hold()
                settlements, self._settlements = self._settlements[:MAX_BATCH], self._settlements[MAX_BATCH:]
                holds, self._holds = self._holds[:MAX_BATCH], self._holds[MAX_BATCH:]
                try:
                    await self._commit(settlements, holds)
                    failures = 0
                except ServiceUnavailable:
                    for settlement, _ in settlements:
                        settlement.retried = True  # its commit may have landed, unacknowledged
                    self._settlements[:0] = settlements  # kept (and journaled): tried again
                    await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])
                    failures += 1
            self._idle.set()

    async def _wait_for_a_hold(self) -> None:
        self._hold_queued.clear()
        try:
            await asyncio.wait_for(self._hold_queued.wait(), SETTLEMENT_WAIT)
        except asyncio.TimeoutError:
            pass

    async def _commit(self, settlements: list[tuple[Settlement, Segment | None]], holds: list[tuple[Hold, asyncio.Future]]) -> None:
        try:
            await self._in_db_thread(self._ledger.apply, [s for s, _ in settlements], [h for h, _ in holds])
        except ServiceUnavailable as exc:
            self._answer_failed(holds, exc)
            raise
        except Exception:
            log.exception("a batch of %d settlements and %d holds failed; applying them one by one",
                          len(settlements), len(holds))
            await self._one_by_one(settlements, holds)
            return
        self._answer(holds)
        self._acknowledge(settlements)

    async def _one_by_one(self, settlements, holds) -> None:
        """Isolates what made a batch fail: each item in a transaction of its own."""
        for item in settlements:
            try:
                await self._in_db_thread(self._ledger.apply, [item[0]], [])
            except ServiceUnavailable:
                item[0].retried = True
                self._settlements.insert(0, item)
                continue
            except Exception:
                log.exception("could not record usage for %s", item[0].record and item[0].record.request_id)
            self._acknowledge([item])
        for hold, future in holds:
            try:
                await self._in_db_thread(self._ledger.apply, [], [hold])
            except Exception as exc:  # noqa: BLE001 - the request gets the error
                hold.error = exc
            self._answer([(hold, future)])

    def _answer(self, holds: list[tuple[Hold, asyncio.Future]]) -> None:
        for hold, future in holds:
            if future.cancelled():
                if hold.result is not None:  # its request is gone: release the hold now
                    self._settlements.append((Settlement(None, hold.result), None))
                    self._wake.set()
            elif hold.error is not None:
                future.set_exception(hold.error)
            else:
                future.set_result(hold)

    @staticmethod
    def _answer_failed(holds: list[tuple[Hold, asyncio.Future]], error: Exception) -> None:
        for _, future in holds:
            if not future.done():
                future.set_exception(error)

    def _acknowledge(self, settlements: list[tuple[Settlement, Segment | None]]) -> None:
        if self._journal is None:
            return
        for _, segment in settlements:
            if segment is not None:
                self._journal.committed(segment)
