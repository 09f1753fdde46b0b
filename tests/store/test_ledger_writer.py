"""LedgerWriter: holds and settlements that queue together are committed together (a handful of
transactions for many requests), the money stays exact, and the journal keeps what is queued."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from dataclasses import replace
from decimal import Decimal

import pytest

from coderapi.errors import QuotaExceeded, ServiceUnavailable
from coderapi.services.ledger_writer import LedgerWriter
from coderapi.services.usage_journal import UsageJournal
from coderapi.store.tables import CostReservation, UsageEvent

from tests.store.records import usage_record


def test_concurrent_holds_are_group_committed_and_exact(ledger_case):
    db, accounts, ledger, principal, commits, tmp_path = ledger_case
    writer = LedgerWriter(ledger, UsageJournal(tmp_path / "journal"))

    async def burst():
        tries = [writer.reserve(principal, f"r{i}", Decimal("0.03"), confirm_key=True) for i in range(60)]
        return await asyncio.gather(*tries, return_exceptions=True)

    commits.clear()
    outcomes = asyncio.run(burst())
    admitted = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, QuotaExceeded)]
    assert len(admitted) == 33 and len(refused) == 27  # $1 / $0.03: exactly 33 fit, however they queue
    assert len(commits) <= 5  # 60 holds, a few transactions (one per request before)

    async def settle_all():
        for i, hold in enumerate(admitted):
            writer.settle(usage_record(principal, f"r{i}", "0.01"), hold)
        await writer.close()

    commits.clear()
    asyncio.run(settle_all())
    assert len(commits) <= 3
    assert asyncio.run(accounts.users.balance(principal.user_id)) == Decimal("1") - 33 * Decimal("0.01")
    with db.session() as session:
        assert session.query(UsageEvent).count() == 33
        assert session.query(CostReservation).filter(CostReservation.settled_at.is_(None)).count() == 0
    assert list((tmp_path / "journal").glob("*.jsonl")) == []  # all committed: nothing left to replay


def test_a_cached_principal_is_checked_against_its_row_in_the_batch(ledger_case):
    _, accounts, ledger, principal, _, _ = ledger_case
    writer = LedgerWriter(ledger)
    stale = replace(principal, scopes=("model:chat", "model:embeddings"))  # not what the row says
    with pytest.raises(Exception) as changed:
        asyncio.run(writer.reserve(stale, "r1", Decimal("0.01"), confirm_key=True))
    assert type(changed.value).__name__ == "KeyChanged" and changed.value.fresh.scopes == principal.scopes


def test_the_journal_replays_only_what_dead_gateways_left(ledger_case, tmp_path):
    db, accounts, ledger, principal, _, _ = ledger_case
    journal_dir = tmp_path / "journal"
    hold = asyncio.run(ledger.reserve(principal, "dead", Decimal("0.5")))
    # A gateway that died: its segment holds one whole record and one cut short by the kill.
    dead = UsageJournal(journal_dir)
    segment = dead.append(usage_record(principal, "dead", "0.2"), hold)
    os.write(segment.fd, b'{"request_id": "cut sh')
    fcntl.flock(segment.fd, fcntl.LOCK_UN)  # the process is gone: its lock with it
    # A live gateway's segment is left alone.
    alive = UsageJournal(journal_dir)
    alive.append(usage_record(principal, "alive", "0.1"), None)

    replayed = asyncio.run(LedgerWriter(ledger, UsageJournal(journal_dir)).recover())
    assert replayed == 1
    # Killed after its batch committed but before its segment was deleted: replayed, charged once.
    again = UsageJournal(journal_dir)
    fcntl.flock(again.append(usage_record(principal, "dead", "0.2"), hold).fd, fcntl.LOCK_UN)
    assert asyncio.run(LedgerWriter(ledger, UsageJournal(journal_dir)).recover()) == 1
    with db.session() as session:
        assert [e.request_id for e in session.query(UsageEvent)] == ["dead"]
    assert asyncio.run(accounts.users.balance(principal.user_id)) == Decimal("0.8")
    assert len(list(journal_dir.glob("*.jsonl"))) == 1  # the live one


def test_while_the_database_is_away_usage_waits_in_the_journal_and_close_is_bounded(ledger_case, tmp_path):
    _, _, _, principal, _, _ = ledger_case

    class Away:
        def apply(self, settlements, holds):
            raise ServiceUnavailable("down", retry_after=2, code="database_unavailable")

    writer = LedgerWriter(Away(), UsageJournal(tmp_path / "away"))

    async def run():
        writer.settle(usage_record(principal, "r1", "0.1"), None)
        with pytest.raises(ServiceUnavailable):
            await writer.reserve(principal, "r2", Decimal("0.1"), confirm_key=True)
        started = time.monotonic()
        await writer.close(timeout=0.5)
        return time.monotonic() - started

    assert asyncio.run(run()) < 5  # shutdown is not held hostage by the database
    kept = list((tmp_path / "away").glob("*.jsonl"))
    assert len(kept) == 1 and b'"request_id":"r1"' in kept[0].read_bytes()  # for the next start
