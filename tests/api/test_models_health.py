"""The catalogue, health and metrics."""

from __future__ import annotations

import httpx

from tests.api.conftest import ALIAS_ID, METRICS_TOKEN, SERVED_ID

METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def test_models_list_needs_no_key_and_names_the_weights(platform):
    client = platform.client(key="anything")
    ids = [m.id for m in client.models.list()]
    assert ids == [SERVED_ID, ALIAS_ID]
    data = httpx.get(platform.base + "/v1/models").json()["data"]
    alias = next(m for m in data if m["id"] == ALIAS_ID)
    assert alias["served_by"] == SERVED_ID and SERVED_ID in alias["aliases"]
    assert {"object", "created", "owned_by", "type", "info"} <= set(alias)
    assert {"name", "developer", "contextLength", "weights"} <= set(alias["info"])


def test_model_by_id_with_slash(platform):
    model = platform.client().models.retrieve(ALIAS_ID)
    assert model.id == ALIAS_ID and model.owned_by
    missing = httpx.get(platform.base + "/v1/models/no/such-model")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_health_and_metrics(platform):
    health = httpx.get(platform.base + "/health")
    assert health.status_code == 200 and health.json()["models"] == {SERVED_ID: True}
    platform.client().chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "Hi"}])
    text = httpx.get(platform.base + "/metrics", headers=METRICS_AUTH).text
    assert "coderapi:time_to_first_token_seconds_bucket" in text
    assert "coderapi:num_requests_running" in text
    assert 'coderapi:num_preemptions_total{model_name="Qwen/Qwen2.5-Coder-0.5B-Instruct"} 0.0' in text
    assert 'coderapi:generation_tokens_total{model_name="Qwen/Qwen2.5-Coder-0.5B-Instruct"}' in text
