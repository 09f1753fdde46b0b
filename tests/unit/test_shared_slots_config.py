"""Which served models count `upstream_slots` across gateways: those with the slots set, when the
settings name a Redis (the count itself is tested on a real Redis in tests/integration/test_shared_slots.py)."""

from __future__ import annotations

import pytest

from coderapi.backends.factory import build_served_models, shared_slots
from coderapi.config import ModelSpec, Settings


def spec(**fields) -> ModelSpec:
    return ModelSpec(id="m", backend="upstream", upstream_urls=["http://127.0.0.1:9/v1"],
                     gguf="/nonexistent/tokenizer.gguf", **fields)


@pytest.mark.parametrize("mode", ["coder", "passthrough"])
def test_slots_are_shared_through_the_settings_redis_per_model(tmp_path, mode):
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0", redis_failure_mode="closed")
    shared = shared_slots(spec(upstream_mode=mode, upstream_slots=6), settings)
    assert shared is not None and shared.limit == 6 and shared.key == "coderapi:slots:{m}"
    assert shared._failure_mode == "closed"


def test_without_redis_or_without_slots_each_gateway_counts_its_own(tmp_path):
    assert shared_slots(spec(upstream_slots=6), Settings(data_dir=tmp_path)) is None
    assert shared_slots(spec(upstream_slots=0), Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0")) is None


async def test_a_pass_through_gateway_is_built_with_the_shared_count(tmp_path):
    model = spec(upstream_mode="passthrough", upstream_slots=3)
    settings = Settings(data_dir=tmp_path, redis_url="redis://127.0.0.1:9/0", models=[model], bootstrap_admin=False)
    [served] = build_served_models(settings)
    try:
        assert served.backend._queue.shared.limit == 3
    finally:
        await served.backend.close()
