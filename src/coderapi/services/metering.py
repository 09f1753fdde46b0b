"""Usage is counted once, where a request ends, and recorded once: success, error, refusal or hang-up.

Money: a request's cost is its tokens at the model's prices per million (`ModelSpec`), computed in
`Decimal` and rounded to the store's six places; it is written on the usage row, debited from
the user's balance and the request's cost reservation is dropped, in the same transaction
(`CostReservations.apply`, batched by `LedgerWriter`, journaled on disk until committed). Successful requests and requests whose client hung
up (the tokens were generated) are charged; failed and refused ones cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import AsyncIterator, Awaitable, Callable

from coderapi.backends.base import RequestTally
from coderapi.config import ModelSpec
from coderapi.errors import CoderapiError
from coderapi.clock import utcnow
from coderapi.services.accounts import Principal, UsageRecord
from coderapi.services.metrics import UNKNOWN_MODEL_LABEL, ServingMetrics
from coderapi.services.ledger_writer import LedgerWriter
from coderapi.store.tables import to_money

log = logging.getLogger("coderapi.metering")

CHARGED_STATUSES = ("success", "cancelled")
_MILLION = Decimal(1_000_000)


def request_cost(spec: ModelSpec | None, tally: RequestTally) -> Decimal:
    """USD for the request's tokens at the model's prices (floats read through their repr)."""
    if spec is None:
        return to_money(0)
    cost = (
        tally.prompt_tokens * Decimal(str(spec.price_input_per_million))
        + tally.completion_tokens * Decimal(str(spec.price_output_per_million))
    ) / _MILLION
    return to_money(cost)


@dataclass
class MeterScope:
    """One inference request's accounting; `finish` takes effect once, whatever calls it."""

    principal: Principal
    endpoint: str
    request_id: str
    _record: Callable[["MeterScope", str, int, str | None], None]
    model: str = ""
    spec: ModelSpec | None = None
    tally: RequestTally = field(default_factory=RequestTally)
    finished: bool = False
    origin: str = "api"  # api | playground
    client_request_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # for the answer (x-ratelimit-*)
    settle: Callable[[int], Awaitable[None]] | None = None  # given the tokens used, at the end
    reservation_id: int | None = None  # the money held at admission, dropped when recorded
    release: Callable[[], None] | None = None  # the in-flight count taken at admission

    def finish(self, status: str, status_code: int, error_code: str | None = None) -> None:
        if not self.finished:
            self.finished = True
            if self.release is not None:
                self.release()
            self._record(self, status, status_code, error_code)

    def fail(self, error: BaseException) -> None:
        if isinstance(error, CoderapiError):
            # Refused: turned away before any token (limits, overload). Ended midway: an error.
            refused = error.status_code in (403, 429, 503) and not self.tally.completion_tokens
            status = "refused" if refused else "error"
            self.finish(status, error.status_code, error.code)
        else:
            self.finish("error", 500, "internal_error")

    async def wrap_stream(self, stream: AsyncIterator) -> AsyncIterator:
        ended: BaseException | None = None
        try:
            async for chunk in stream:
                yield chunk
        except BaseException as exc:
            ended = exc
            raise
        finally:
            try:
                await stream.aclose()  # first: a backend settles its counts as its stream closes
            finally:
                self._end_stream(ended)

    def _end_stream(self, ended: BaseException | None) -> None:
        if ended is None:
            self.finish("success", 200)
        elif isinstance(ended, (asyncio.CancelledError, GeneratorExit)):
            self.finish("cancelled", 499, "client_disconnected")
        else:
            self.fail(ended)


READ_YOUR_WRITES_SECONDS = 1.0  # the longest a usage or balance read waits for this gateway's queue


class Metering:
    def __init__(self, ledger: LedgerWriter, metrics: ServingMetrics) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._pending: set[asyncio.Task] = set()

    def open(
        self, principal: Principal, endpoint: str, request_id: str, *, origin: str = "api",
        client_request_id: str | None = None,
    ) -> MeterScope:
        return MeterScope(
            principal, endpoint, request_id, self._record, origin=origin, client_request_id=client_request_id
        )

    def _record(self, scope: MeterScope, status: str, status_code: int, error_code: str | None) -> None:
        now = time.monotonic()
        self._observe(scope, status, now)
        # A task of its own: the request's task may be cancelled (client gone) while this is written.
        task = asyncio.get_running_loop().create_task(self._count_and_write(scope, status, status_code, error_code, now))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _count_and_write(
        self, scope: MeterScope, status: str, status_code: int, error_code: str | None, now: float
    ) -> None:
        tally = scope.tally
        ended_at = utcnow()
        if tally.count_later is not None:  # e.g. an upstream stream cut short: tokenized here
            try:
                await tally.count_later()
            except Exception:
                log.exception("could not count the tokens of %s", scope.request_id)
        record = UsageRecord(
            request_id=scope.request_id,
            user_id=scope.principal.user_id,
            key_id=scope.principal.key_id,
            key_prefix=scope.principal.key_prefix,
            model=scope.model,
            endpoint=scope.endpoint,
            prompt_tokens=tally.prompt_tokens,
            completion_tokens=tally.completion_tokens,
            cached_tokens=tally.cached_tokens,
            cost=request_cost(scope.spec, tally) if status in CHARGED_STATUSES else to_money(0),
            status=status,
            status_code=status_code,
            error_code=error_code,
            finish_reason=tally.finish_reason,
            latency_ms=int((now - tally.started_at) * 1000),
            ttft_ms=None if tally.ttft_seconds is None else int(tally.ttft_seconds * 1000),
            origin=scope.origin,
            client_request_id=scope.client_request_id,
            ended_at=ended_at,
        )
        used = tally.prompt_tokens + tally.completion_tokens
        await self._write(record, scope.settle, used, scope.reservation_id)

    async def _write(
        self, record: UsageRecord, settle: Callable[[int], Awaitable[None]] | None, used: int,
        reservation_id: int | None,
    ) -> None:
        try:
            if settle is not None:
                await settle(used)
        except Exception:
            log.exception("could not settle the rate limit of %s", record.request_id)
        # Journaled on disk now, committed with the next batch (retried while the database is down).
        self._ledger.settle(record, reservation_id)

    def _observe(self, scope: MeterScope, status: str, now: float) -> None:
        # Labels come from the registry only: a caller's made-up model name must not add a series.
        model = scope.spec.id if scope.spec else UNKNOWN_MODEL_LABEL
        tally = scope.tally
        self._metrics.requests.labels(model, tally.finish_reason or status).inc()
        self._metrics.e2e.labels(model).observe(now - tally.started_at)
        if tally.ttft_seconds is not None:
            self._metrics.ttft.labels(model).observe(tally.ttft_seconds)
        if tally.queue_seconds is not None:
            self._metrics.queue_time.labels(model).observe(tally.queue_seconds)
        if tally.token_gaps:
            itl = self._metrics.itl.labels(model)
            for gap in tally.token_gaps:
                itl.observe(gap)
        self._metrics.prompt_tokens.labels(model).inc(tally.prompt_tokens)
        self._metrics.generation_tokens.labels(model).inc(tally.completion_tokens)

    async def settled(self, timeout: float = READ_YOUR_WRITES_SECONDS) -> None:
        """Before a read of usage or balance: the requests this gateway has answered are committed
        first, so a caller sees its own requests at once. Bounded: with the database away, the read
        goes on with what is committed."""
        async def committed() -> None:
            await self.drain()
            await self._ledger.drain()

        try:
            await asyncio.wait_for(committed(), timeout)
        except asyncio.TimeoutError:
            pass

    async def drain(self) -> None:
        """Waits until every ended request's usage is journaled and queued for the ledger."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        # Queued, journaled: the ledger commits them (LedgerWriter.close bounds that wait).
