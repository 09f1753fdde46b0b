"""A journaled usage record comes back as it was written, its end time included (a replayed row
is stamped with when its request ended, not when it was replayed)."""

from datetime import datetime, timezone
from decimal import Decimal

from coderapi.services.account_types import UsageRecord
from coderapi.services.usage_journal import decode, encode


def test_a_record_round_trips_with_its_end_time():
    ended = datetime(2026, 12, 2, 13, 59, 58, 123456, tzinfo=timezone.utc)
    record = UsageRecord("req-1", 1, 2, "cdr-abcd", "m", "chat", prompt_tokens=3, completion_tokens=4,
                         cost=Decimal("0.000123"), status_code=200, ended_at=ended)
    back, hold, lease = decode(encode(record, 7))
    assert (back, hold, lease) == (record, 7, None)
    row = back.row(datetime(2026, 12, 2, 14, 30, tzinfo=timezone.utc))
    assert row["created_at"] == ended and "ended_at" not in row


def test_a_record_without_an_end_time_is_stamped_when_written():
    record = UsageRecord("req-2", 1, None, None, "m", "chat")
    back, _, _ = decode(encode(record, None))
    now = datetime(2026, 12, 2, 14, 30, tzinfo=timezone.utc)
    assert back.ended_at is None and back.row(now)["created_at"] == now


def test_a_record_settled_from_a_lease_keeps_its_lease():
    record = UsageRecord("req-3", 1, 2, "cdr-abcd", "m", "chat", cost=Decimal("0.000042"))
    assert decode(encode(record, None, 11)) == (record, None, 11)


def test_a_line_written_before_leases_has_none():
    record = UsageRecord("req-4", 1, 2, "cdr-abcd", "m", "chat")
    line = encode(record, 5).replace(b',"lease_id":null', b"")
    assert b"lease_id" not in line and decode(line) == (record, 5, None)
