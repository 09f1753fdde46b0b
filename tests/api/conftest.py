"""The api tier: the real app on a loopback port, the scripted engine, a temporary SQLite."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import httpx
import openai
import pytest

from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from coderapi.engines.fake import FakeEngine
from tests.servers import serve_in_thread

SERVED_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
ALIAS_ID = "Qwen/Qwen2.5-Coder-32B-Instruct"
METRICS_TOKEN = "test-metrics-token"  # the bearer token that reads /metrics in these tests


@dataclass
class Platform:
    base: str
    app: object
    key: str  # an inference key of user@example.com
    management_key: str

    @property
    def services(self):
        return self.app.state.services

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key or self.key, max_retries=0, timeout=120)

    def run(self, coro):
        """Run a service coroutine from the test thread (the server has its own loop)."""
        return asyncio.run(coro)

    def usage_rows(self, user_id: int | None = None):
        from coderapi.store.tables import UsageEvent

        with self.services.db.session() as session:
            query = session.query(UsageEvent)
            if user_id is not None:
                query = query.filter(UsageEvent.user_id == user_id)
            return query.order_by(UsageEvent.id).all()

    def wait_rows(self, user_id: int | None, count: int, timeout: float = 5.0):
        """The user's (or everyone's) usage rows once there are `count` (they are written just after
        the answer), or as they are after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.usage_rows(user_id)
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def http(self, key: str) -> httpx.Client:
        """Raw HTTP to the platform API with a Bearer key."""
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


@dataclass
class Account:
    """A user of their own with an inference key and a management key (tests share one app)."""

    user_id: int
    email: str
    key: str
    prefix: str
    management_key: str


def make_account(platform: Platform, **key_fields) -> Account:
    accounts = platform.services

    async def seed():
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        user = await accounts.signups.create_user(email, "correct horse battery")
        info, key = await accounts.keys.create_key(user.id, name="inference", **key_fields)
        _, management = await accounts.keys.create_key(user.id, name="management", kind="management")
        return Account(user.id, email, key, info.prefix, management)

    return platform.run(seed())


def make_settings(tmp_path, **overrides) -> Settings:
    models = [
        ModelSpec(
            id=SERVED_ID, aliases=[ALIAS_ID], backend="fake", context_length=4096,
            price_input_per_million=1.0, price_output_per_million=2.0,
        )
    ]
    overrides.setdefault("metrics_token", METRICS_TOKEN)
    return Settings(data_dir=tmp_path, models=models, bootstrap_admin=False, **overrides)


@contextmanager
def launch(data_dir, *, engine: Callable[[ModelSpec], FakeEngine] | None = None, **overrides) -> Iterator[Platform]:
    """The app on a loopback port with a fresh database in `data_dir`, seeded with one user;
    `engine` builds its model's engine (default: the scripted one, a millisecond a token)."""
    settings = make_settings(data_dir, **overrides)
    engine = engine or (lambda spec: FakeEngine(context_length=spec.context_length, token_delay=0.001))
    app = create_app(settings, engine_factory=engine)
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user("user@example.com", "correct horse battery")
        _, key = await services.keys.create_key(user.id, name="test")
        _, management = await services.keys.create_key(user.id, name="mgmt", kind="management")
        return key, management

    key, management = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=10) as base:
        yield Platform(base, app, key, management)


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    with launch(tmp_path_factory.mktemp("platform")) as running:
        yield running
