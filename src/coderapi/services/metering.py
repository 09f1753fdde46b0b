"""Usage is recorded once, where a request ends (`RequestLife.end`): success, error, refusal or hang-up.

Money: a request's cost is its tokens at the model's prices per million (`ModelSpec`), computed in
`Decimal` and rounded to the store's six places; it is written on the usage row, debited from
the user's balance and the request's cost reservation is dropped, in the same transaction
(`CostReservations.apply`, batched by `LedgerWriter`, journaled on disk until committed). Successful requests and requests whose client hung
up (the tokens were generated) are charged; failed and refused ones cost nothing. The rows of requests
turned away before doing anything are written at most so many a user a minute (`row_budget`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Awaitable, Callable

from coderapi.backends.base import RequestTally, token_count
from coderapi.config import ModelSpec
from coderapi.clock import utcnow
from coderapi.services.account_types import Principal, UsageRecord
from coderapi.services.metrics import UNKNOWN_MODEL_LABEL, ServingMetrics
from coderapi.services.credit_leases import CostHold, CreditLeases
from coderapi.services.request_life import Ending, RequestLife, Status
from coderapi.services.row_budget import EmptyRowBudget
from coderapi.money import to_money

log = logging.getLogger("coderapi.metering")

_MILLION = Decimal(1_000_000)


def request_cost(spec: ModelSpec | None, tally: RequestTally) -> Decimal:
    """USD for the request's tokens at the model's prices (floats read through their repr)."""
    if spec is None:
        return to_money(0)
    cost = (
        token_count(tally.prompt_tokens) * Decimal(str(spec.price_input_per_million))
        + token_count(tally.completion_tokens) * Decimal(str(spec.price_output_per_million))
    ) / _MILLION
    return to_money(cost)


def charged_cost(life: RequestLife, ending: Ending) -> Decimal:
    """What the request is charged: its cost, never more than the worst case it held (the hold is
    what admission checked against the balance; a backend's count over it is a fault, logged)."""
    if not ending.status.charged:
        return to_money(0)
    cost = request_cost(life.spec, life.tally)
    hold = life.hold
    if hold is not None and cost > hold.amount:
        log.error("request %s cost $%s, over the $%s it held: charged what it held", life.request_id, cost, hold.amount)
        return to_money(hold.amount)
    return cost


READ_YOUR_WRITES_SECONDS = 1.0  # the longest a usage or balance read waits for this gateway's queue


def _empty(life: RequestLife, ending: Ending) -> bool:
    """Turned away before it did anything: no token, no cost hold, refused or cancelled (see row_budget)."""
    tally = life.tally
    return (
        life.hold is None and ending.status in (Status.REFUSED, Status.CANCELLED)
        and not tally.prompt_tokens and not tally.completion_tokens
    )


class Metering:
    def __init__(self, leases: CreditLeases, metrics: ServingMetrics, rows: EmptyRowBudget | None = None) -> None:
        self._leases = leases  # settles each usage record (and its hold) with the ledger
        self._metrics = metrics
        self._rows = rows or EmptyRowBudget(0)  # which empty requests' rows are written (default: all)
        self._pending: set[asyncio.Task] = set()

    def open(
        self, principal: Principal, endpoint: str, request_id: str, *, origin: str = "api",
        client_request_id: str | None = None,
    ) -> RequestLife:
        """A new request's life, recorded here when it ends."""
        return RequestLife(
            principal, endpoint, request_id, self.record, origin=origin, client_request_id=client_request_id
        )

    def record(self, life: RequestLife, ending: Ending) -> None:
        """The one usage record of an ended request (its metrics now, its row in a moment)."""
        now = time.monotonic()
        try:
            self._observe(life, ending, now)
        except Exception:  # metrics are never a reason to lose the usage row
            log.exception("could not observe the metrics of %s", life.request_id)
        write_row = not _empty(life, ending) or self._rows.admits(life.principal.user_id)
        if not write_row:
            self._metrics.unwritten_rows.inc()
        # A task of its own: the request's task may be cancelled (client gone) while this is written.
        task = asyncio.get_running_loop().create_task(self._count_and_write(life, ending, now, write_row))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _count_and_write(self, life: RequestLife, ending: Ending, now: float, write_row: bool) -> None:
        tally = life.tally
        ended_at = utcnow()
        if tally.count_later is not None:  # e.g. an upstream stream cut short: tokenized here
            try:
                await tally.count_later()
            except Exception:
                log.exception("could not count the tokens of %s", life.request_id)
        record = UsageRecord(
            request_id=life.request_id,
            user_id=life.principal.user_id,
            key_id=life.principal.key_id,
            key_prefix=life.principal.key_prefix,
            model=life.model,
            endpoint=life.endpoint,
            prompt_tokens=token_count(tally.prompt_tokens),
            completion_tokens=token_count(tally.completion_tokens),
            cached_tokens=token_count(tally.cached_tokens),
            cost=charged_cost(life, ending),
            status=ending.status.value,
            status_code=ending.status_code,
            error_code=ending.error_code,
            finish_reason=tally.finish_reason,
            latency_ms=int((now - tally.started_at) * 1000),
            ttft_ms=None if tally.ttft_seconds is None else int(tally.ttft_seconds * 1000),
            origin=life.origin,
            client_request_id=life.client_request_id,
            ended_at=ended_at,
        )
        used = record.prompt_tokens + record.completion_tokens
        await self._write(record, life.settle, used, life.hold, write_row)

    async def _write(
        self, record: UsageRecord, settle: Callable[[int], Awaitable[None]] | None, used: int,
        hold: CostHold | None, write_row: bool,
    ) -> None:
        try:
            if settle is not None:
                await settle(used)
        except Exception:
            log.exception("could not settle the rate limit of %s", record.request_id)
        if write_row or hold is not None:  # a hold is always given back, with its row
            # Journaled on disk now, committed with the next batch (retried while the database is down).
            self._leases.end(record, hold)

    def _observe(self, life: RequestLife, ending: Ending, now: float) -> None:
        # Labels come from the registry only: a caller's made-up model name must not add a series.
        model = life.spec.id if life.spec else UNKNOWN_MODEL_LABEL
        tally = life.tally
        self._metrics.requests.labels(model, tally.finish_reason or ending.status.value).inc()
        self._metrics.e2e.labels(model).observe(now - tally.started_at)
        if tally.ttft_seconds is not None:
            self._metrics.ttft.labels(model).observe(tally.ttft_seconds)
        if tally.queue_seconds is not None:
            self._metrics.queue_time.labels(model).observe(tally.queue_seconds)
        if tally.token_gaps:
            itl = self._metrics.itl.labels(model)
            for gap in tally.token_gaps:
                itl.observe(gap)
        # Counter.inc refuses a negative: odd counts are clamped (see `token_count`) before they get here.
        self._metrics.prompt_tokens.labels(model).inc(token_count(tally.prompt_tokens))
        self._metrics.generation_tokens.labels(model).inc(token_count(tally.completion_tokens))

    async def settled(self, timeout: float = READ_YOUR_WRITES_SECONDS) -> None:
        """Before a read of usage or balance: the requests this gateway has answered are committed
        first, so a caller sees its own requests at once. Bounded: with the database away, the read
        goes on with what is committed."""
        async def committed() -> None:
            await self.drain()
            await self._leases.drain()

        try:
            await asyncio.wait_for(committed(), timeout)
        except asyncio.TimeoutError:
            pass

    async def drain(self) -> None:
        """Waits until every ended request's usage is journaled and queued for the ledger."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        # Queued, journaled: the ledger commits them (LedgerWriter.close bounds that wait).
