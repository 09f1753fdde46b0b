"""The time window of a usage report: `period` (24h, 7d) or `start` + `end`, in UTC.

As the usage and logs contract defines it: `period` is a positive integer followed by `h` or `d`;
`start` and `end` are ISO-8601 (a value without a UTC offset is read as UTC) and come together;
never both forms; `end` not before `start`; at most 92 days; each in the years 1970 to 8999 (UTC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from coderapi.errors import InvalidRequest

MAX_WINDOW = timedelta(days=92)
DEFAULT_PERIOD = "30d"
_PERIOD = re.compile(r"([1-9][0-9]{0,4})([hd])")
# Instants a window may name. Far inside datetime's years 1 to 9999, so that no arithmetic on them
# (UTC conversion, a local day and the next one in any time zone) can overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)  # exclusive


@dataclass(frozen=True)
class Window:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, inclusive

    @classmethod
    def last(cls, span: timedelta, now: datetime) -> Window:
        return cls(now - span, now)

    @classmethod
    def parse(cls, period: str | None, start: str | None, end: str | None, now: datetime) -> Window:
        """The window the query names; InvalidRequest (with `param`) when it is malformed."""
        if period is not None and (start is not None or end is not None):
            raise InvalidRequest("Provide either `period` or both `start` and `end`, not both.", param="period")
        if start is None and end is None:
            return cls.last(parse_period(period or DEFAULT_PERIOD), now)
        if start is None or end is None:
            missing = "start" if start is None else "end"
            raise InvalidRequest(f"`start` and `end` must be given together; `{missing}` is missing.", param=missing)
        window = cls(parse_instant(start, "start"), parse_instant(end, "end"))
        if window.end < window.start:
            raise InvalidRequest("`end` must not be earlier than `start`.", param="end")
        if window.end - window.start > MAX_WINDOW:
            raise InvalidRequest("The window must not exceed 92 days.", param="end")
        return window

    def days(self, zone: ZoneInfo) -> tuple[list[date], list[datetime]]:
        """Local days the window touches in `zone`, and the UTC instants where each next day
        begins: rows before edges[i] (and not before edges[i-1]) fall on labels[i]."""
        first = self.start.astimezone(zone).date()
        labels, edges = [first], []
        while True:
            edge = datetime.combine(labels[-1] + timedelta(days=1), time(), zone).astimezone(timezone.utc)
            if edge > self.end:
                return labels, edges
            edges.append(edge)
            labels.append(labels[-1] + timedelta(days=1))


def parse_period(text: str) -> timedelta:
    match = _PERIOD.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest(
            f"Invalid period {text!r}: expected a positive number of hours or days, like 24h or 7d.", param="period"
        )
    amount, unit = int(match[1]), match[2]
    span = timedelta(hours=amount) if unit == "h" else timedelta(days=amount)
    if span > MAX_WINDOW:
        raise InvalidRequest("The window must not exceed 92 days.", param="period")
    return span


def parse_instant(text: str, param: str) -> datetime:
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"Invalid `{param}` {text!r}: expected an ISO-8601 date-time.", param=param) from None
    if not EARLIEST.year - 1 <= moment.year <= LATEST.year:  # before converting: year 1 or 9999 may overflow
        raise _out_of_range(text, param)
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    if not EARLIEST <= utc < LATEST:
        raise _out_of_range(text, param)
    return utc


def _out_of_range(text: str, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid `{param}` {text!r}: it must fall in the years {EARLIEST.year} to {LATEST.year - 1} (UTC).",
        param=param,
    )
