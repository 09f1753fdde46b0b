"""A dashboard site for the api tier: the real app (scripted engine) on loopback, an admin, and
browser-like clients (tests/dashboard_client.py). Import the `site` fixture into a test module."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import openai
import pytest

from coderapi.app import create_app
from coderapi.engines.fake import FakeEngine
from tests.api.conftest import ALIAS_ID, make_settings
from tests.dashboard_client import Browser
from tests.servers import serve_in_thread

ADMIN = "root@example.com"
PASSWORD = "correct horse battery"


@dataclass
class Site:
    base: str
    app: object

    @property
    def services(self):
        return self.app.state.services

    def browser(self, **headers: str) -> Browser:
        return Browser(self.base, **headers)

    def user(self, email: str) -> Browser:
        browser = self.browser()
        assert browser.signup(email).status_code == 303
        return browser

    def admin(self) -> Browser:
        browser = self.browser()
        assert browser.login(ADMIN).status_code == 303
        return browser

    def ask(self, key: str) -> str:
        client = openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=30)
        answer = client.chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "hi"}])
        return answer.choices[0].message.content

    def run(self, coro):
        return asyncio.run(coro)


@contextmanager
def open_site(data_dir, **overrides) -> Iterator[Site]:
    """A site with its own database in `data_dir` and these settings, with the admin ADMIN."""
    settings = make_settings(data_dir, **overrides)
    app = create_app(settings, engine_factory=lambda spec: FakeEngine(context_length=spec.context_length))
    app.state.services.db.upgrade()
    asyncio.run(app.state.services.signups.create_user(ADMIN, PASSWORD, role="admin"))
    with serve_in_thread(app, wait_healthy=10) as base:
        yield Site(base, app)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    with open_site(tmp_path_factory.mktemp("dashboard")) as opened:
        yield opened
