"""The lone request's cost hold is cheap: its transaction (the previous request's settlement and
this request's hold, the usual c=1 case) takes few statements, and its money stays exact."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import event

from coderapi.services.accounts import UsageRecord
from coderapi.services.reservations import Hold, Settlement
from coderapi.store.tables import CostReservation, User


def test_settlement_and_hold_take_seven_statements_and_stay_exact(db, funded_key):
    ledger, principal = funded_key.ledger, funded_key.principal
    first = Hold(principal, "r0", Decimal("0.5"), confirm_key=True)
    ledger.apply([], [first])  # also the once-a-minute purge: not counted below
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    record = UsageRecord("r0", principal.user_id, principal.key_id, principal.key_prefix, "m",
                         "chat.completions", cost=Decimal("0.2"))
    settlement, second = Settlement(record, first.result), Hold(principal, "r1", Decimal("0.8"), confirm_key=True)
    ledger.apply([settlement], [second])
    assert second.error is None and settlement.result is not None
    # lock the user, release its hold, write the usage row, debit it, confirm the key, sum the holds, insert
    assert len(statements) <= 7, statements
    retried = Settlement(record, first.result)
    ledger.apply([retried], [])  # a retried settlement charges nothing twice
    assert retried.result is None
    with db.session() as session:
        assert session.get(User, principal.user_id).balance == Decimal("0.8")
        held = session.query(CostReservation).filter(CostReservation.settled_at.is_(None)).all()
        assert [(h.request_id, h.amount) for h in held] == [("r1", Decimal("0.8"))]
