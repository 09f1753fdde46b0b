"""Run an app on a real loopback port (in a thread, or as a `coderapi serve` subprocess), so clients
(openai SDK, requests) use real HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import httpx
import uvicorn

from coderapi.server import uvicorn_config

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(app, port: int) -> uvicorn.Config:
    """A coderapi app runs as `coderapi serve` runs it (its connection guard included); others plainly."""
    services = getattr(getattr(app, "state", None), "services", None)
    if services is None:
        return uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    settings = services.settings.model_copy(update={"host": "127.0.0.1", "port": port, "log_level": "warning"})
    return uvicorn_config(app, settings)


def raw_chat_post(key: str, body: bytes, *, declared_length: int | None = None) -> bytes:
    """The bytes of a POST /v1/chat/completions with a JSON `body`, for a raw socket; its
    Content-Length is the body's own unless `declared_length` says otherwise (a body cut short)."""
    length = len(body) if declared_length is None else declared_length
    return (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {length}\r\n\r\n"
    ).encode() + body


def raw_connection(base: str, *, source: str = "127.0.0.1", receive_buffer: int | None = None) -> socket.socket:
    """A plain TCP connection to the server at `base`, from the loopback address `source` (any of
    127.0.0.0/8), with a small receive buffer if asked (set before connecting, so the window is small)."""
    url = urlparse(base)
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect((url.hostname, url.port))
    return sock


@contextmanager
def serve_in_thread(app, *, wait_healthy: float = 0.0) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(_config(app, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_healthy
    while wait_healthy and httpx.get(base + "/health").status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("models did not load in time")
        time.sleep(0.2)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    base: str
    key: str  # the first-start admin key, printed alone on stdout


@contextmanager
def coderapi_serve(
    args: list[str], *, env: dict[str, str], log_path: Path, healthy_within: float = 120
) -> Iterator[ServeProcess]:
    """A real `coderapi serve` subprocess on a free loopback port, healthy; killed if still alive after.
    Its stderr goes to a file, not a pipe nobody reads (that could fill and block it)."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
        )
        try:
            key = proc.stdout.readline().strip()
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base, proc, healthy_within)
            yield ServeProcess(proc, base, key)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _wait_healthy(base: str, proc: subprocess.Popen, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"coderapi serve did not become healthy (exit status {proc.poll()})")
        time.sleep(0.2)
