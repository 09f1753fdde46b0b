"""The auth epoch rises in the transaction of every change to what a key may do, and only then:
gateways trust a cached key and a credit lease only while it holds (see coderapi.store.auth_epoch)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from coderapi import crud
from coderapi.clock import utcnow
from coderapi.services.key_ops import read_auth_epoch


def _epoch(db) -> int:
    return read_auth_epoch(db)


def test_every_change_to_a_key_or_its_owners_access_raises_it(db, funded_key):
    accounts, principal = funded_key.accounts, funded_key.principal
    changes = [
        lambda: accounts.keys.update_key(principal.user_id, principal.key_prefix, disabled=True),
        lambda: accounts.keys.update_key(principal.user_id, principal.key_prefix, disabled=False),
        lambda: accounts.keys.update_key(principal.user_id, principal.key_prefix, scopes=[]),
        lambda: accounts.keys.update_key(principal.user_id, principal.key_prefix, limit_threshold="1",
                                         limit_retention="day"),
        lambda: accounts.users.set_user_limits(principal.user_id, rpm_limit=5, tpm_limit=None),
        lambda: accounts.users.set_user_disabled(principal.user_id, True),
        lambda: accounts.users.grant_credit(principal.user_id, Decimal("-0.5"), "refund", "admin"),
        lambda: accounts.keys.delete_key(principal.user_id, principal.key_prefix),
    ]
    for change in changes:
        before = _epoch(db)
        asyncio.run(change())
        assert _epoch(db) == before + 1


def test_money_and_bookkeeping_do_not_raise_it(db, funded_key):
    accounts, principal = funded_key.accounts, funded_key.principal
    before = _epoch(db)
    asyncio.run(accounts.users.grant_credit(principal.user_id, Decimal("2"), "top-up", "admin"))
    asyncio.run(accounts.keys.create_key(principal.user_id, name="second"))
    with db.session() as session:
        crud.keys.touch_many(session, [principal.key_id], utcnow() + timedelta(hours=1))
        crud.users.adjust_balance(session, principal.user_id, Decimal("-0.1"))  # a usage debit
    asyncio.run(accounts.keys.update_key(principal.user_id, principal.key_prefix, name="renamed"))
    assert _epoch(db) == before


def test_a_change_rolled_back_leaves_it(db, funded_key):
    principal = funded_key.principal
    before = _epoch(db)
    try:
        with db.session() as session:
            key = crud.keys.by_prefix(session, principal.key_prefix)
            key.disabled = True
            session.flush()
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert _epoch(db) == before
