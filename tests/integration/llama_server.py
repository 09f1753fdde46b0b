"""A real llama.cpp `llama-server` for the remote-engine tests, and a coderapi gateway in front of it.

The binary: $CODERAPI_LLAMA_SERVER (CI builds it once with `make llama-server`, cached outside the
clone), else `scripts/build_llama.sh server` (prints the cached build, building it on first use).
Where it cannot be had, the tests skip, or fail under CODERAPI_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from tests.api.conftest import ALIAS_ID, SERVED_ID, Platform
from tests.conftest import require_or_skip
from tests.servers import ROOT, free_port, serve_in_thread

# 2 slots of 2048 tokens, 2 threads: the machine is small and shared; greedy, short generations only.
SERVER_ARGS = ["-c", "4096", "-np", "2", "-t", "2", "--no-webui"]
BUILD_TIMEOUT = 1800  # a first build of llama-server takes minutes


def llama_server_binary() -> Path:
    configured = os.environ.get("CODERAPI_LLAMA_SERVER")
    if configured:
        require_or_skip(Path(configured).is_file(), f"CODERAPI_LLAMA_SERVER={configured} does not exist")
        return Path(configured)
    try:
        built = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build_llama.sh"), "server"], capture_output=True, text=True,
            timeout=BUILD_TIMEOUT, env={**os.environ, "PYTHON": sys.executable}, check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        require_or_skip(False, f"llama-server could not be built: {exc}")
    path = Path(built.stdout.strip().splitlines()[-1])
    require_or_skip(path.is_file(), f"llama-server build did not produce {path}")
    return path


@dataclass
class LlamaServer:
    proc: subprocess.Popen
    root: str  # http://127.0.0.1:PORT (its OpenAI routes are under /v1)
    command: list[str]


@contextmanager
def llama_server(gguf: Path, log_path: Path, *, ready_within: float = 120) -> Iterator[LlamaServer]:
    port = free_port()
    command = [str(llama_server_binary()), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), *SERVER_ARGS]
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            root = f"http://127.0.0.1:{port}"
            _wait_ready(root, proc, ready_within)
            yield LlamaServer(proc, root, command)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(root: str, proc: subprocess.Popen, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(root + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"llama-server did not become ready (exit status {proc.poll()})")
        time.sleep(0.2)


@contextmanager
def coder_gateway(data_dir: Path, urls: list[str], api: str, **spec_fields) -> Iterator[Platform]:
    """coderapi in a thread, serving SERVED_ID (and ALIAS_ID) with the Coder layer over `urls`;
    the embedded GGUF is the tokenizer. One user; `platform.user_id` is theirs."""
    from coderapi.app import create_app
    from coderapi.config import ModelSpec, Settings
    from tests.integration.conftest import MODEL_CACHE

    spec = ModelSpec(
        id=SERVED_ID, aliases=[ALIAS_ID], backend="upstream", upstream_mode="coder", upstream_api=api,
        upstream_urls=urls, context_length=2048, n_parallel=2,
        price_input_per_million=1.0, price_output_per_million=2.0, **spec_fields,
    )
    settings = Settings(data_dir=data_dir, model_cache_dir=MODEL_CACHE, models=[spec], bootstrap_admin=False)
    app = create_app(settings)
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user("remote@example.com", "correct horse battery")
        return user.id, (await services.keys.create_key(user.id, name="remote"))[1]

    user_id, key = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=60) as base:
        platform = Platform(base, app, key, management_key="")
        platform.user_id = user_id
        yield platform


def stream_chat_then_hang_up(base: str, key: str, payload: dict, *, chunks: int, timeout: float = 300) -> list[str]:
    """Streams a chat request and hangs up after `chunks` content deltas; the deltas received."""
    received: list[str] = []
    with httpx.Client(base_url=base, timeout=timeout) as client:
        with client.stream("POST", "/v1/chat/completions", json={**payload, "stream": True},
                           headers={"Authorization": f"Bearer {key}"}) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        received.append(delta)
                if len(received) >= chunks:
                    break  # hang up mid-stream
    return received
