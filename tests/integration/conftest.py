"""The integration tier: the real Qwen2.5-Coder-0.5B GGUF through llama.cpp, loaded once per session."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from tests.api.conftest import ALIAS_ID, SERVED_ID, Platform
from tests.conftest import require_or_skip
from tests.servers import serve_in_thread

MODEL_CACHE = Path(__file__).resolve().parents[2] / "data" / "models"


@pytest.fixture(scope="session")
def real_platform(tmp_path_factory) -> Platform:
    """The whole app on the real model: 4 parallel sequences of 4096 tokens, greedy tests only."""
    require_or_skip(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python is not installed")
    from coderapi.app import create_app
    from coderapi.config import ModelSpec, Settings

    spec = ModelSpec(
        id=SERVED_ID, aliases=[ALIAS_ID], context_length=4096, n_parallel=4,
        price_input_per_million=0.07, price_output_per_million=0.16,
    )
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("real"), model_cache_dir=MODEL_CACHE, models=[spec], bootstrap_admin=False
    )
    app = create_app(settings)
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user("dev@example.com", "correct horse battery")
        return (await services.keys.create_key(user.id, name="it"))[1]

    key = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=120) as base:
        yield Platform(base, app, key, management_key="")
