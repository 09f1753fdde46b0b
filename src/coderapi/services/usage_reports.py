"""Usage, logs and charges of one user: what `/v2/usage`, `/v2/logs` and the dashboard show.

Every method takes the user's id and reads only that user's rows (tenant isolation), runs its
queries on the report threads (a `FairPool` of their own: an account's report scans its usage rows,
seconds for millions of them, and a flood of reports must not hold the threads every request's
database work runs on), and returns plain dataclasses (`usage_types`). A key prefix that is
not one of the user's keys is answered NotFound, exactly like one that does not exist. The sums
are computed from the usage rows themselves, so a report always equals its rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import TypeVar
from zoneinfo import ZoneInfo, available_timezones

from coderapi.backends.fair_pool import FairPool, run_on
from coderapi.crud import usage_queries as q
from coderapi.errors import InvalidRequest, NotFound
from coderapi.money import to_money
from coderapi.services.usage_types import (
    OUTCOMES, STORED_STATUSES, Charge, CreditEntry, LogEntry, LogPage, UsageDetail, UsageGroup, UsageTotals,
)
from coderapi.services.usage_window import Window
from coderapi.store.database import Database

DIMENSIONS = ("day", "model", "key")
MAX_PAGE = 100
MAX_OFFSET = 1_000_000_000  # far past any log; keeps the value inside the database's 64-bit OFFSET
MAX_MODELS = 50
T = TypeVar("T")


class UsageReports:
    def __init__(
        self, db: Database, settled: Callable[[], Awaitable[None]] | None = None, pool: FairPool | None = None
    ) -> None:
        self._db = db
        self._settled = settled  # waits for this gateway's queued usage rows (Metering.settled)
        self._pool = pool  # the report threads (None: the default executor, for tests and the CLI)
        self._zones: frozenset[str] | None = None  # IANA names, read once

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    async def _query(self, user_id: int, work: Callable[..., T], *args) -> T:
        return await run_on(self._pool, user_id, work, *args)

    async def totals(self, user_id: int, window: Window, *, key_prefix: str | None = None,
                     models: Sequence[str] = ()) -> UsageTotals:
        """Requests, tokens and spend in the window, for one key or (None) all the user's keys."""
        f = await self._filter(user_id, window, key_prefix, models)
        return await self._query(user_id, self._totals, f)

    async def series(self, user_id: int, window: Window, *, by: Sequence[str] = ("day",), tz: str = "UTC",
                     key_prefix: str | None = None, models: Sequence[str] = ()) -> list[UsageGroup]:
        """Totals per group of `by` (any of "day", "model", "key"); days are local days in `tz`.
        Grouped by "day" alone, every day of the window is present (zeros included), oldest first;
        otherwise groups are sorted by day, then by spend (highest first)."""
        f = await self._filter(user_id, window, key_prefix, models)
        return await self._query(user_id, self._series, f, window, tuple(by), tz)

    async def detail(self, user_id: int, window: Window, *, key_prefix: str | None = None,
                     group_by: Sequence[str] = (), tz: str = "UTC") -> UsageDetail:
        """Totals, the per-model breakdown, and (when `group_by` is given) the groups."""
        f = await self._filter(user_id, window, key_prefix, ())
        return await self._query(user_id, self._detail, f, window, tuple(group_by), tz)

    async def logs(self, user_id: int, window: Window, *, key_prefix: str | None = None,
                   models: Sequence[str] = (), statuses: Sequence[str] = (), limit: int = 50,
                   offset: int = 0) -> LogPage:
        """One page of the request log, newest first. `statuses` takes stored statuses (success,
        error, refused, cancelled) and the contract's outcomes (succeeded, failed)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be from 1 to {MAX_PAGE}", param="limit")
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidRequest(f"offset must be from 0 to {MAX_OFFSET}", param="offset")
        f = await self._filter(user_id, window, key_prefix, models, expand_statuses(statuses))
        return await self._query(user_id, self._logs, f, limit, offset)

    async def recent_charges(self, user_id: int, *, limit: int = 20) -> list[Charge]:
        """The user's latest charged requests (cost above zero), newest first."""
        if self._settled is not None:
            await self._settled()
        return await self._query(user_id, self._charges, user_id, limit)

    async def credit_history(self, user_id: int, *, limit: int = 20) -> list[CreditEntry]:
        """Credit granted (or taken back) by operators and the starting credit, newest first."""
        return await self._query(user_id, self._grants, user_id, limit)

    async def check_key_prefix(self, user_id: int, prefix: str) -> None:
        """NotFound unless `prefix` is one of the user's keys (or a deleted one with usage)."""
        if not await self._query(user_id, self._owns_prefix, user_id, prefix):
            raise NotFound(f"No API key with prefix {prefix!r}", param="key_prefix")

    async def _filter(self, user_id, window, key_prefix, models, statuses=()) -> q.UsageFilter:
        if self._settled is not None:
            await self._settled()
        if key_prefix is not None:
            await self.check_key_prefix(user_id, key_prefix)
        if len(models) > MAX_MODELS:
            raise InvalidRequest(f"At most {MAX_MODELS} models may be given", param="model")
        return q.UsageFilter(user_id, window.start, window.end, key_prefix, tuple(models), tuple(statuses))

    # ---- in the worker thread ---------------------------------------------------------------

    def _totals(self, f: q.UsageFilter) -> UsageTotals:
        with self._db.session() as session:
            return _totals_of(q.totals(session, f))

    def _series(self, f: q.UsageFilter, window: Window, by: tuple[str, ...], tz: str) -> list[UsageGroup]:
        labels, edges = window.days(self.zone(tz)) if "day" in by else ([], [])
        with self._db.session() as session:
            groups = _groups(q.grouped(session, f, _dims(by), edges), labels)
        if by == ("day",):
            present = {g.day: g for g in groups}
            return [present.get(day) or UsageGroup(_totals_of(None), day=day) for day in labels]
        return sorted(groups, key=lambda g: (g.day or date.min, -g.totals.spend, g.model or "", g.key_prefix or ""))

    def _detail(self, f: q.UsageFilter, window: Window, group_by: tuple[str, ...], tz: str) -> UsageDetail:
        self.zone(tz)  # checked even when it is not used
        groups = self._series(f, window, group_by, tz) if group_by else None
        with self._db.session() as session:
            totals = _totals_of(q.totals(session, f))
            models = _groups(q.grouped(session, f, ("model",), []), [])
        models.sort(key=lambda g: (-g.totals.spend, g.model or ""))
        return UsageDetail(window, f.key_prefix, totals, models, groups)

    def _logs(self, f: q.UsageFilter, limit: int, offset: int) -> LogPage:
        with self._db.session() as session:
            total, rows = q.page(session, f, limit, offset)
            return LogPage([_entry(row) for row in rows], total, limit, offset)

    def _charges(self, user_id: int, limit: int) -> list[Charge]:
        with self._db.session() as session:
            return [
                Charge(r.created_at, r.request_id, r.key_prefix, r.model, r.prompt_tokens, r.completion_tokens,
                       to_money(r.cost))
                for r in q.charges(session, user_id, limit)
            ]

    def _grants(self, user_id: int, limit: int) -> list[CreditEntry]:
        with self._db.session() as session:
            return [CreditEntry(g.created_at, to_money(g.amount), g.reason, g.granted_by)
                    for g in q.grants(session, user_id, limit)]

    def _owns_prefix(self, user_id: int, prefix: str) -> bool:
        with self._db.session() as session:
            return q.prefix_is_users(session, user_id, prefix)

    def zone(self, tz: str) -> ZoneInfo:
        """The IANA zone named exactly `tz` (`Europe/Berlin`, `UTC`); InvalidRequest otherwise."""
        if self._zones is None:
            self._zones = frozenset(available_timezones() - {"localtime"})
        if tz not in self._zones:
            raise InvalidRequest(
                f"Unknown time zone {tz!r}: use a canonical IANA name such as UTC or Europe/Berlin.", param="tz"
            )
        return ZoneInfo(tz)


def expand_statuses(values: Sequence[str]) -> tuple[str, ...]:
    """Stored statuses for a mix of stored statuses and contract outcomes; InvalidRequest on others."""
    statuses: list[str] = []
    for value in values:
        if value in OUTCOMES:
            statuses += OUTCOMES[value]
        elif value in STORED_STATUSES:
            statuses.append(value)
        else:
            raise InvalidRequest(f"Invalid status {value!r}: expected succeeded or failed.", param="status")
    return tuple(dict.fromkeys(statuses))


def _dims(by: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown or len(set(by)) != len(by):
        raise InvalidRequest(f"Cannot group by {','.join(by)}: use day, model and/or key.", param="group_by")
    return by


def _totals_of(row) -> UsageTotals:
    if row is None:
        return UsageTotals(0, 0, 0, 0, to_money(0))
    return UsageTotals(int(row.requests), int(row.succeeded), int(row.input_tokens), int(row.output_tokens),
                       to_money(row.spend))


def _groups(rows, labels: list[date]) -> list[UsageGroup]:
    groups = []
    for row in rows:
        fields = row._mapping
        day = labels[fields["day"]] if "day" in fields else (labels[0] if labels else None)
        groups.append(UsageGroup(_totals_of(row), day=day, model=fields.get("model"), key_prefix=fields.get("key")))
    return groups


def _entry(r) -> LogEntry:
    return LogEntry(
        id=r.id, created_at=r.created_at, request_id=r.request_id, client_request_id=r.client_request_id,
        key_prefix=r.key_prefix, model=r.model, endpoint=r.endpoint, status=r.status, status_code=r.status_code,
        error_code=r.error_code, finish_reason=r.finish_reason, origin=r.origin, input_tokens=r.prompt_tokens,
        output_tokens=r.completion_tokens, cost=to_money(r.cost), latency_ms=r.latency_ms, ttft_ms=r.ttft_ms,
    )
