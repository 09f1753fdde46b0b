"""Where an upstream model is served from (its URLs, which can name private hosts) is shown to
admins only: other callers and visitors see the backend kind."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from tests.dashboard_client import Browser
from tests.servers import free_port, serve_in_thread

PRIVATE_URL = f"http://10.11.12.13:{free_port()}/v1"
MODEL = "Qwen/Qwen2.5-Coder-32B-Instruct"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    spec = ModelSpec(id=MODEL, backend="upstream", upstream_mode="passthrough", upstream_urls=[PRIVATE_URL], upstream_model="x")
    settings = Settings(data_dir=tmp_path_factory.mktemp("disclosure"), models=[spec], bootstrap_admin=False)
    app = create_app(settings)
    accounts = app.state.services
    app.state.services.db.upgrade()

    async def seed():
        keys = {}
        for email, role in (("boss@example.com", "admin"), ("dev@example.com", "user")):
            user = await accounts.signups.create_user(email, PASSWORD, role=role)
            keys[role] = (await accounts.keys.create_key(user.id, name="k"))[1]
        return keys

    keys = asyncio.run(seed())
    with serve_in_thread(app) as base:
        yield base, keys


def _weights(base: str, key: str | None) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    listed = httpx.get(base + "/v1/models", headers=headers).json()["data"]
    one = httpx.get(base + f"/v1/models/{MODEL}", headers=headers).json()
    return [m["info"]["weights"] for m in listed] + [one["info"]["weights"]]


def test_the_catalogue_shows_upstream_urls_to_admin_keys_only(gateway):
    base, keys = gateway
    for key in (None, keys["user"], "cdr-not-a-real-key"):
        weights = _weights(base, key)
        assert all(w.startswith("upstream") and "10.11.12.13" not in w for w in weights), (key, weights)
    assert all(PRIVATE_URL in w for w in _weights(base, keys["admin"]))


def test_dashboard_pages_show_upstream_urls_to_admins_only(gateway):
    base, _ = gateway
    visitor = Browser(base)
    for path in ("/", "/docs", "/login", "/signup"):
        assert "10.11.12.13" not in visitor.get(path).text, path
    user = Browser(base)
    assert user.login("dev@example.com", PASSWORD).status_code == 303
    for path in ("/", "/billing", "/playground", "/docs"):
        assert "10.11.12.13" not in user.get(path).text, path
    admin = Browser(base)
    assert admin.login("boss@example.com", PASSWORD).status_code == 303
    assert PRIVATE_URL in admin.get("/").text
