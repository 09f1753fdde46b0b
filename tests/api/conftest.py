"""The api tier: the real app on a loopback port, the scripted engine, a temporary SQLite."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import openai
import pytest

from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from coderapi.engines.fake import FakeEngine
from tests.servers import serve_in_thread

SERVED_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
ALIAS_ID = "Qwen/Qwen2.5-Coder-32B-Instruct"


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
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key or self.key, max_retries=0, timeout=30)

    def run(self, coro):
        """Run a service coroutine from the test thread (the server has its own loop)."""
        return asyncio.run(coro)

    def usage_rows(self):
        from coderapi.store.tables import UsageEvent

        with self.services.db.session() as session:
            return session.query(UsageEvent).order_by(UsageEvent.id).all()


def make_settings(tmp_path, **overrides) -> Settings:
    models = [
        ModelSpec(
            id=SERVED_ID, aliases=[ALIAS_ID], backend="fake", context_length=4096,
            price_input_per_million=1.0, price_output_per_million=2.0,
        )
    ]
    return Settings(data_dir=tmp_path, models=models, bootstrap_admin=False, **overrides)


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Platform:
    settings = make_settings(tmp_path_factory.mktemp("platform"))
    app = create_app(settings, engine_factory=lambda spec: FakeEngine(context_length=spec.context_length, token_delay=0.001))
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.accounts.create_user("user@example.com", "correct horse battery")
        _, key = await services.accounts.create_key(user.id, name="test")
        _, management = await services.accounts.create_key(user.id, name="mgmt", kind="management")
        return key, management

    key, management = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=10) as base:
        yield Platform(base, app, key, management)
