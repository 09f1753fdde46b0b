"""LedgerWriter: a settlement with no hold queued waits (briefly) for the next request's hold, so
a client sending requests one after the other costs one transaction per request, not two; the
money stays exact and a lone settlement still commits."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from coderapi.services.ledger_writer import LedgerWriter
from coderapi.services.usage_journal import UsageJournal
from coderapi.store.tables import UsageEvent

from tests.store.records import usage_record


def test_back_to_back_requests_share_one_transaction_per_request(ledger_case):
    db, accounts, ledger, principal, commits, tmp_path = ledger_case
    writer = LedgerWriter(ledger, UsageJournal(tmp_path / "journal"))

    async def client_in_a_loop():
        hold = await writer.reserve(principal, "r0", Decimal("0.5"), confirm_key=True)
        commits.clear()
        for i in range(1, 6):
            writer.settle(usage_record(principal, f"r{i - 1}", "0.1"), hold)  # the previous request ended
            await asyncio.sleep(0.005)  # the client reads its answer and sends the next request
            hold = await writer.reserve(principal, f"r{i}", Decimal("0.5"), confirm_key=True)
        writer.settle(usage_record(principal, "r5", "0.1"), hold)
        await writer.close()

    asyncio.run(client_in_a_loop())
    assert len(commits) == 6  # 5 holds, each with the previous settlement, and the last settlement alone
    with db.session() as session:
        assert sorted(e.request_id for e in session.query(UsageEvent)) == [f"r{i}" for i in range(6)]
    assert asyncio.run(accounts.users.balance(principal.user_id)) == Decimal("0.4")  # $1 less 6 x $0.1
