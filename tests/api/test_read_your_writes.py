"""Usage rows and debits are group-committed just after each answer; a caller that reads its usage
or balance right after an answer still sees that request (the read waits for this gateway's queue)."""

from __future__ import annotations

from decimal import Decimal

from tests.api.conftest import ALIAS_ID, make_account

USER = [{"role": "user", "content": "repeat: counted at once"}]


def test_usage_and_balance_include_the_answer_just_received(platform):
    account = make_account(platform)
    api = platform.http(account.management_key)
    balance = Decimal(str(api.get("/v1/billing/balance").json()["balance"]))
    for made in range(1, 4):
        platform.client(account.key).chat.completions.create(model=ALIAS_ID, messages=USER)
        assert api.get("/v2/usage", params={"period": "24h"}).json()["requests"] == made
        now = Decimal(str(api.get("/v1/billing/balance").json()["balance"]))
        assert now < balance  # this answer's cost is already debited
        balance = now
