"""Money is reserved at admission and settled at the end: concurrent requests cannot overspend.

Each request here really generates its whole budget (the scripted engine repeats the prompt's
text), so its real cost is close to its worst case: a balance (or a key's limit) that covers
three worst cases pays for exactly three requests, however many are sent at once.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx

from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.services.cost_estimate import worst_case_cost
from coderapi.services.credit_leases import LEASE_IDLE_SECONDS
from coderapi.store.tables import CostReservation
from tests.api.conftest import ALIAS_ID, make_account

CONCURRENT = 16  # all at once, and within the per-key cap of requests running (max_concurrent_requests_per_key)
AFFORDABLE = 3
BUDGET = 1500  # tokens each request generates (the scripted engine repeats this many bytes)


def _body(max_tokens: int = BUDGET) -> bytes:
    text = "repeat: " + "x" * BUDGET
    return json.dumps({"model": ALIAS_ID, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}).encode()


def _worst_case(platform, body: bytes) -> Decimal:
    spec = platform.services.registry.resolve(ALIAS_ID).spec
    return worst_case_cost(ChatCompletionRequest.model_validate_json(body), len(body), spec)


def _fire(platform, key: str, body: bytes, count: int) -> list[httpx.Response]:
    start = threading.Barrier(count)

    def send(_):
        with httpx.Client(base_url=platform.base, timeout=120) as client:
            start.wait()
            return client.post(
                "/v1/chat/completions", content=body,
                headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
            )

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def _held(platform) -> list:
    with platform.services.db.session() as session:
        return session.query(CostReservation).filter(CostReservation.settled_at.is_(None)).all()


def test_concurrent_requests_cannot_take_the_balance_below_zero(platform):
    account = make_account(platform)
    accounts = platform.services
    body = _body()
    worst = _worst_case(platform, body)
    credit = worst * AFFORDABLE + Decimal("0.000100")
    start = platform.run(accounts.users.balance(account.user_id))
    platform.run(accounts.users.grant_credit(account.user_id, credit - start, "test", "pytest"))

    answers = _fire(platform, account.key, body, CONCURRENT)

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * AFFORDABLE + [403] * (CONCURRENT - AFFORDABLE), codes
    refused = [a.json()["error"] for a in answers if a.status_code == 403]
    assert all(e["code"] == "insufficient_quota" and "reserved" in e["message"] for e in refused)
    rows = platform.wait_rows(account.user_id, CONCURRENT)
    assert sorted(r.status for r in rows) == ["refused"] * (CONCURRENT - AFFORDABLE) + ["success"] * AFFORDABLE
    assert all(r.completion_tokens == BUDGET for r in rows if r.status == "success")
    balance = platform.run(accounts.users.balance(account.user_id))
    assert balance >= 0 and balance == credit - sum(r.cost for r in rows)
    assert not [h for h in _held(platform) if h.user_id == account.user_id]  # every hold was settled


def test_concurrent_requests_cannot_overspend_a_key_limit(platform):
    body = _body()
    worst = _worst_case(platform, body)
    limit = worst * AFFORDABLE + Decimal("0.000100")
    account = make_account(platform, limit_threshold=limit, limit_retention="day")

    answers = _fire(platform, account.key, body, CONCURRENT)

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * AFFORDABLE + [403] * (CONCURRENT - AFFORDABLE), codes
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 403} == {"spending_limit_exceeded"}
    rows = platform.wait_rows(account.user_id, CONCURRENT)
    spent = sum(r.cost for r in rows)
    assert 0 < spent <= limit


def test_a_hold_is_released_when_the_client_hangs_up(platform):
    account = make_account(platform)
    payload = json.loads(_body())
    payload["stream"] = True
    with httpx.Client(base_url=platform.base, timeout=60) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {account.key}"}
        ) as response:
            lines = response.iter_lines()
            for _ in range(5):
                next(lines)
            assert [h for h in _held(platform) if h.user_id == account.user_id]  # held while it runs
    rows = platform.wait_rows(account.user_id, 1)
    assert rows[0].status == "cancelled" and rows[0].cost > 0
    balance = platform.run(platform.services.users.balance(account.user_id))
    assert balance == Decimal(platform.services.settings.starting_credit) - rows[0].cost
    # The request held its cost in the key's credit lease: what it did not spend went back to the
    # lease at once, and the lease, idle, goes back to the balance within LEASE_IDLE_SECONDS.
    deadline = time.monotonic() + LEASE_IDLE_SECONDS + 5
    while [h for h in _held(platform) if h.user_id == account.user_id]:
        assert time.monotonic() < deadline, "the idle lease was never given back"
        time.sleep(0.2)


def test_unknown_models_are_rate_limited_before_they_are_resolved(platform):
    account = make_account(platform)
    platform.run(platform.services.users.set_user_limits(account.user_id, rpm_limit=2, tpm_limit=None))
    api = platform.http(account.key)
    body = {"model": "no-such-model-" + account.prefix, "messages": [{"role": "user", "content": "Hi"}]}
    assert [api.post("/v1/chat/completions", json=body).status_code for _ in range(2)] == [404, 404]
    third = api.post("/v1/chat/completions", json=body)
    assert third.status_code == 429 and "retry-after" in third.headers
