"""Credit leases: a key's requests hold their worst-case cost from one lease taken in one
transaction; the money stays exact (no overspend, nothing lost), a lease shrinks by what its
requests spent, and goes back to the balance when idle, retired or at close."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from coderapi.errors import QuotaExceeded
from coderapi.services.credit_leases import CreditLeases
from coderapi.services.ledger_writer import LedgerWriter
from coderapi.store.tables import CostReservation, UsageEvent

from tests.store.records import usage_record


def _unsettled(db) -> list[CostReservation]:
    with db.session() as session:
        return session.query(CostReservation).filter(CostReservation.settled_at.is_(None)).all()


def _leasing(ledger, **settings) -> tuple[LedgerWriter, CreditLeases]:
    writer = LedgerWriter(ledger)
    return writer, CreditLeases(writer, **settings)


def _balance(accounts, principal) -> Decimal:
    return asyncio.run(accounts.users.balance(principal.user_id))


def test_a_keys_requests_hold_from_one_lease_taken_in_one_transaction(ledger_case):
    db, accounts, ledger, principal, commits, _ = ledger_case
    writer, leases = _leasing(ledger, lease_requests=10, lease_seconds=60)

    async def five_requests():
        holds = [await leases.hold(principal, f"r{i}", Decimal("0.01"), epoch=0, confirm_key=True) for i in range(5)]
        taken = len(commits)
        lease_rows = _unsettled(db)
        for i, hold in enumerate(holds):
            leases.end(usage_record(principal, f"r{i}", "0.004"), hold)
        await writer.drain()
        after_settling = _unsettled(db)
        await leases.close()
        await writer.close()
        return holds, taken, lease_rows, after_settling

    commits.clear()
    holds, taken, lease_rows, after_settling = asyncio.run(five_requests())
    assert taken == 1  # five requests, one transaction before they ran
    assert {id(h.lease) for h in holds} == {id(holds[0].lease)} and holds[0].reservation_id is None
    assert [r.amount for r in lease_rows] == [Decimal("0.1")]  # 10 requests' worth: under a quarter of $1
    assert [r.amount for r in after_settling] == [Decimal("0.1") - 5 * Decimal("0.004")]  # spent leaves the lease
    assert _unsettled(db) == []  # given back at close
    assert _balance(accounts, principal) == Decimal("1") - 5 * Decimal("0.004")
    with db.session() as session:
        assert session.query(UsageEvent).count() == 5


def test_near_the_end_of_the_balance_requests_hold_exactly_their_cost(ledger_case):
    db, accounts, ledger, principal, _, _ = ledger_case
    writer, leases = _leasing(ledger, lease_requests=10, lease_seconds=60)

    async def one():
        hold = await leases.hold(principal, "big", Decimal("0.3"), epoch=0, confirm_key=True)
        rows = _unsettled(db)
        leases.end(usage_record(principal, "big", "0.3"), hold)
        await leases.close()
        await writer.close()
        return hold, rows

    hold, rows = asyncio.run(one())
    # Ten requests' worth would be $3; a quarter of $1 is $0.25, less than two requests: no lease.
    assert hold.lease is None and hold.reservation_id is not None
    assert [r.amount for r in rows] == [Decimal("0.3")]
    assert _balance(accounts, principal) == Decimal("0.7")


def test_concurrent_requests_on_leases_never_overspend_and_lose_nothing(ledger_case):
    db, accounts, ledger, principal, _, _ = ledger_case
    writer, leases = _leasing(ledger, lease_requests=8, lease_seconds=60)
    amount = Decimal("0.03")
    rng = random.Random(7)

    async def request(i: int):
        await asyncio.sleep(rng.random() * 0.05)
        try:
            hold = await leases.hold(principal, f"r{i}", amount, epoch=0, confirm_key=True)
        except QuotaExceeded:
            return None
        await asyncio.sleep(rng.random() * 0.05)
        cost = str(amount * rng.choice([0, 1, 2, 3]) / 3)  # spent up to the worst case
        leases.end(usage_record(principal, f"r{i}", cost), hold)
        return Decimal(cost)

    async def burst():
        spent = await asyncio.gather(*(request(i) for i in range(120)))
        await leases.close()
        await writer.close()
        return [s for s in spent if s is not None]

    spent = asyncio.run(burst())
    balance = _balance(accounts, principal)
    assert balance >= 0 and balance == Decimal("1") - sum(spent)  # every cost debited, once
    assert _unsettled(db) == []  # every lease and hold given back
    with db.session() as session:
        assert session.query(UsageEvent).count() == len(spent)
    assert len(spent) >= 33  # requests spend less than their worst case: at least $1 / $0.03 ran


def test_a_new_auth_epoch_retires_the_lease_and_it_goes_back_after_its_last_request(ledger_case):
    db, _, ledger, principal, _, _ = ledger_case
    writer, leases = _leasing(ledger, lease_requests=10, lease_seconds=60)

    async def scenario():
        first = await leases.hold(principal, "r0", Decimal("0.01"), epoch=1, confirm_key=True)
        second = await leases.hold(principal, "r1", Decimal("0.01"), epoch=2, confirm_key=True)
        assert second.lease is not first.lease and first.lease.retired
        await writer.drain()
        both = len(_unsettled(db))
        leases.end(usage_record(principal, "r0", "0.01"), first)  # the old lease's last request
        await writer.drain()
        one = len(_unsettled(db))
        leases.end(usage_record(principal, "r1", "0.01"), second)
        await leases.close()
        await writer.close()
        return both, one

    assert asyncio.run(scenario()) == (2, 1)
    assert _unsettled(db) == []


def test_an_idle_lease_goes_back_to_the_balance(ledger_case):
    db, _, ledger, principal, _, _ = ledger_case
    writer, leases = _leasing(ledger, lease_requests=10, lease_seconds=60, idle_seconds=0.1)

    async def scenario():
        hold = await leases.hold(principal, "r0", Decimal("0.01"), epoch=0, confirm_key=True)
        leases.end(usage_record(principal, "r0", "0.01"), hold)
        await asyncio.sleep(0.4)
        await writer.drain()
        left = _unsettled(db)
        await writer.close()
        return left, leases.leases

    left, held_here = asyncio.run(scenario())
    assert left == [] and held_here == []


def test_a_lease_past_its_lifetime_takes_no_new_request(ledger_case):
    db, _, ledger, principal, _, _ = ledger_case
    writer = LedgerWriter(ledger)
    now = [0.0]
    leases = CreditLeases(writer, lease_requests=10, lease_seconds=30, clock=lambda: now[0])

    async def scenario():
        first = await leases.hold(principal, "r0", Decimal("0.01"), epoch=0, confirm_key=True)
        now[0] = 31.0
        second = await leases.hold(principal, "r1", Decimal("0.01"), epoch=0, confirm_key=True)
        for i, hold in enumerate((first, second)):
            leases.end(usage_record(principal, f"r{i}", "0.01"), hold)
        await leases.close()
        await writer.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert second.lease is not first.lease and first.lease.released
    assert _unsettled(db) == []
