"""Cost reservations on a real PostgreSQL shared by two gateways: the balance and a key's
spending limit hold under concurrent requests split between them (row lock on the user).

Set CODERAPI_TEST_POSTGRES_URL (.ci/run does). Each test works in a schema of its own.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from decimal import Decimal

import httpx
import pytest

from coderapi.app import create_app
from coderapi.engines.fake import FakeEngine
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.services.cost_estimate import worst_case_cost
from coderapi.store.tables import CostReservation, UsageEvent
from tests.api.conftest import ALIAS_ID, make_settings
from tests.integration.postgres import fresh_schema
from tests.servers import serve_in_thread

CONCURRENT = 20
AFFORDABLE = 3
BUDGET = 1500

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema_url():
    with fresh_schema() as schema:
        yield schema.dsn


@pytest.fixture
def gateways(schema_url, tmp_path):
    """Two apps (two gateways, each its own Services and connection pool) on one database."""
    apps = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, database_url=schema_url)
        app = create_app(settings, engine_factory=lambda spec: FakeEngine(context_length=spec.context_length, token_delay=0.001))
        app.state.services.db.upgrade()
        apps.append(app)
    with ExitStack() as stack:
        bases = [stack.enter_context(serve_in_thread(app, wait_healthy=10)) for app in apps]
        yield apps, bases


def _body() -> bytes:
    content = "repeat: " + "x" * BUDGET
    return json.dumps({"model": ALIAS_ID, "messages": [{"role": "user", "content": content}], "max_tokens": BUDGET}).encode()


def _fire(bases: list[str], key: str, body: bytes) -> list[httpx.Response]:
    start = threading.Barrier(CONCURRENT)

    def send(i: int) -> httpx.Response:
        with httpx.Client(base_url=bases[i % len(bases)], timeout=120) as client:
            start.wait()
            headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
            return client.post("/v1/chat/completions", content=body, headers=headers)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(send, range(CONCURRENT)))


def _seed(services, credit: Decimal | None, **key_fields) -> tuple[int, str]:
    async def seed():
        accounts = services
        user = await accounts.signups.create_user(f"pg-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
        _, key = await accounts.keys.create_key(user.id, name="pg", **key_fields)
        if credit is not None:
            await accounts.users.grant_credit(user.id, credit - await accounts.users.balance(user.id), "test", "pytest")
        return user.id, key

    return asyncio.run(seed())


def _rows(services, user_id: int) -> tuple[list, list]:
    with services.db.session() as session:
        usage = session.query(UsageEvent).filter(UsageEvent.user_id == user_id).all()
        held = session.query(CostReservation).filter(
            CostReservation.user_id == user_id, CostReservation.settled_at.is_(None)
        ).all()
        return usage, held


def _wait_rows(services, user_id: int) -> tuple[list, list]:
    import time

    deadline = time.monotonic() + 30
    while True:
        usage, held = _rows(services, user_id)
        if (len(usage) >= CONCURRENT and not held) or time.monotonic() > deadline:
            return usage, held
        time.sleep(0.05)


def _worst(services, body: bytes) -> Decimal:
    spec = services.registry.resolve(ALIAS_ID).spec
    return worst_case_cost(ChatCompletionRequest.model_validate_json(body), len(body), spec)


def test_two_gateways_cannot_take_the_balance_below_zero(gateways):
    apps, bases = gateways
    services = apps[0].state.services
    body = _body()
    credit = _worst(services, body) * AFFORDABLE + Decimal("0.000100")
    user_id, key = _seed(services, credit)

    answers = _fire(bases, key, body)

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * AFFORDABLE + [403] * (CONCURRENT - AFFORDABLE), codes
    usage, held = _wait_rows(services, user_id)
    assert len(usage) == CONCURRENT and not held
    balance = asyncio.run(services.users.balance(user_id))
    assert balance >= 0 and balance == credit - sum(r.cost for r in usage)


def test_two_gateways_cannot_overspend_a_key_limit(gateways):
    apps, bases = gateways
    services = apps[1].state.services
    body = _body()
    limit = _worst(services, body) * AFFORDABLE + Decimal("0.000100")
    user_id, key = _seed(services, None, limit_threshold=limit, limit_retention="month")

    answers = _fire(bases, key, body)

    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * AFFORDABLE + [403] * (CONCURRENT - AFFORDABLE), codes
    usage, held = _wait_rows(services, user_id)
    assert not held and 0 < sum(r.cost for r in usage) <= limit
