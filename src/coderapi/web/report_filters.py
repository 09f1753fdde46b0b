"""The usage and logs pages' filters: period picker, key, model, status, page; read from the
query string, turned into a usage `Window`, and written back into links."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from coderapi.errors import InvalidRequest
from coderapi.services.usage_window import Window
from coderapi.web.form_numbers import whole_number

PERIODS = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days", "custom": "Custom range"}
DEFAULT_PERIOD = "7d"
STATUSES = {"": "Any status", "success": "Success", "error": "Error", "refused": "Refused", "cancelled": "Cancelled"}
PAGE_SIZE = 25


def _date(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return ""


@dataclass(frozen=True)
class ReportFilters:
    period: str = DEFAULT_PERIOD
    start: str = ""  # YYYY-MM-DD, with period "custom"
    end: str = ""
    key: str = ""  # a key prefix, or "" for every key
    model: str = ""
    status: str = ""
    page: int = 1

    @classmethod
    def from_query(cls, query: QueryParams) -> ReportFilters:
        period = query.get("period", DEFAULT_PERIOD)
        page = whole_number(query.get("page", "1"))
        return cls(
            period=period if period in PERIODS else DEFAULT_PERIOD,
            start=_date(query.get("start", "")), end=_date(query.get("end", "")),
            key=query.get("key", "")[:16], model=query.get("model", "")[:255],
            status=query.get("status", "") if query.get("status", "") in STATUSES else "",
            page=page if page is not None and 0 < page < 100_000 else 1,
        )

    def window(self, now: datetime) -> Window:
        """The window to report on; InvalidRequest for a bad custom range."""
        if self.period != "custom":
            return Window.parse(self.period, None, None, now)
        if not self.start or not self.end:
            raise InvalidRequest("Pick both a start and an end date for a custom range.", param="start")
        return Window.parse(None, f"{self.start}T00:00:00Z", f"{self.end}T23:59:59.999999Z", now)

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def query(self, **changes) -> str:
        """This filter as a query string, with `changes` applied (empty values left out)."""
        values = replace(self, **changes)
        fields = {
            "period": values.period, "start": values.start if values.period == "custom" else "",
            "end": values.end if values.period == "custom" else "", "key": values.key,
            "model": values.model, "status": values.status, "page": values.page if values.page > 1 else "",
        }
        return urlencode({k: v for k, v in fields.items() if v})
