"""The upstream backend: a gateway forwarding to a pool of OpenAI-compatible replicas.

The replica here is another coderapi (scripted engine) on loopback; one pool entry is a dead
port, so every request also exercises routing around a failed replica.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from coderapi.engines.fake import GREETING
from tests.api.conftest import ALIAS_ID, Platform
from tests.servers import free_port, serve_in_thread

GATEWAY_MODEL = "Qwen/Qwen2.5-Coder-32B-Instruct"


@pytest.fixture(scope="module")
def gateway(platform, tmp_path_factory) -> Platform:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    spec = ModelSpec(
        id=GATEWAY_MODEL, backend="upstream", upstream_mode="passthrough", upstream_urls=[dead, platform.base + "/v1"],
        upstream_model=ALIAS_ID, upstream_api_key=platform.key, price_output_per_million=1.0,
    )
    settings = Settings(data_dir=tmp_path_factory.mktemp("gateway"), models=[spec], bootstrap_admin=False)
    app = create_app(settings)
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user("gw@example.com", "correct horse battery")
        return (await services.keys.create_key(user.id, name="gw"))[1]

    key = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=10) as base:
        yield Platform(base, app, key, management_key="")


def test_forwards_and_names_its_model(gateway):
    done = gateway.client().chat.completions.create(model=GATEWAY_MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert done.choices[0].message.content == GREETING
    assert done.model == GATEWAY_MODEL and done.usage.completion_tokens > 0


def test_streams_and_meters_usage(gateway):
    chunks = list(gateway.client().chat.completions.create(
        model=GATEWAY_MODEL, messages=[{"role": "user", "content": "repeat: over the wire"}], stream=True
    ))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "over the wire"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage


def test_completions_forwarded(gateway):
    done = gateway.client().completions.create(model=GATEWAY_MODEL, prompt="def add(a, b):", suffix="\n", max_tokens=20)
    assert done.choices[0].text == "return a + b\n"


def test_upstream_client_errors_keep_their_status_and_param(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(
            model=GATEWAY_MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=100_000
        )
    assert "context length" in caught.value.body["message"]


def test_dead_replica_is_marked_unhealthy(gateway):
    backend = gateway.services.registry.resolve(GATEWAY_MODEL).backend
    healthy = [r.healthy for r in backend._pool.replicas]
    assert healthy == [False, True]
