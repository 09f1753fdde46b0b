"""Start and stop the servers under test, one at a time, on 127.0.0.1 and the same GGUF."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = ROOT / "data" / "models"
CODERAPI_MODEL = "Qwen/Qwen2.5-Coder-0.5B-Instruct"


@dataclass
class Server:
    name: str
    base_url: str
    pid: int
    headers: dict = field(default_factory=dict)
    model: str = "default"
    metrics_headers: dict = field(default_factory=dict)  # what /metrics needs (coderapi: its metrics_token)
    extra: dict = field(default_factory=dict)  # request fields the server needs

    def rss_kib(self) -> int:
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def bench_key(services) -> str:
    """A user and an inference key in a fresh app's database (its `app.state.services`), for a bench client."""

    async def seed() -> str:
        user = await services.signups.create_user("bench@example.com", "correct horse battery")
        return (await services.keys.create_key(user.id, name="bench"))[1]

    return asyncio.run(seed())


def bootstrap_key(proc: subprocess.Popen) -> str:
    """The bootstrap admin key, the first line `coderapi serve` prints on stdout; the rest (the access
    log) is drained on a thread, since a full pipe would block the server's event loop on its next line."""
    key = proc.stdout.readline().strip()
    threading.Thread(target=_discard_lines, args=(proc.stdout,), daemon=True).start()
    return key


def _discard_lines(stream) -> None:
    for _ in stream:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen | None, url: str, timeout: float = 300) -> None:
    """Until `url` answers 200 (`proc`: the server's process, None for one in this process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def coderapi(gguf: Path, *, model_settings: dict | None = None, name: str = "coderapi",
             tree: Path = ROOT) -> Iterator[Server]:
    """The default registry; `model_settings`: the same model with those ModelSpec fields; `tree`:
    the checkout whose src/ it runs (another revision, e.g. a `git worktree`)."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="coderapi-bench-")
    metrics_token = secrets.token_urlsafe(24)
    env = {**os.environ, "CODERAPI_DATA_DIR": data_dir, "CODERAPI_MODEL_CACHE_DIR": str(MODEL_CACHE),
           "CODERAPI_METRICS_TOKEN": metrics_token}
    if model_settings:
        env["CODERAPI_MODELS"] = json.dumps([{"id": CODERAPI_MODEL, **model_settings}])
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree / "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tree,
    )
    try:
        key = bootstrap_key(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base}/health")
        yield Server(name, base, proc.pid, {"Authorization": f"Bearer {key}"}, CODERAPI_MODEL,
                     metrics_headers={"Authorization": f"Bearer {metrics_token}"})
    finally:
        _stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def llama_cpp_python(gguf: Path, threads: int, n_ctx: int) -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads", str(threads),
         "--n_ctx", str(n_ctx), "--interrupt_requests", "False", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base}/v1/models")
        yield Server("llama-cpp-python server", base, proc.pid, model=str(gguf))
    finally:
        _stop(proc)


@contextmanager
def llama_server(binary: Path, gguf: Path, threads: int, parallel: int, ctx_per_seq: int, *,
                 huge_pages: bool = False, name: str = "llama-server") -> Iterator[Server]:
    """`huge_pages`: the model read into memory (`--load-mode none`) and glibc asking for transparent huge
    pages on its large blocks (GLIBC_TUNABLES=glibc.malloc.hugetlb=1): what coderapi's `huge_pages` does."""
    port = free_port()
    extra, env = [], dict(os.environ)
    if huge_pages:
        extra = ["--load-mode", "none"]
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    proc = subprocess.Popen(
        [str(binary), "-m", str(gguf), "-np", str(parallel), "-c", str(ctx_per_seq * parallel), "-t", str(threads),
         "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base}/health")
        yield Server(name, base, proc.pid, model="default")
    finally:
        _stop(proc)
