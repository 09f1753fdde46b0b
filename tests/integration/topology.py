"""The processes of the topology tests: replicas (tests/integration/replica_app.py) and gateways
(real `coderapi serve` subprocesses), each on its own loopback port, each killed at the end; and the
clients the tests reach the gateways with."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.integration.faults import Seen

ROOT = Path(__file__).resolve().parents[2]


def wait_until_answers(url: str, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} did not answer {url} within {timeout} s"
        time.sleep(0.1)


@dataclass
class ReplicaProcess:
    """An OpenAI-compatible replica: every content chunk is "NAME<i> "; it holds requests whose
    last message contains "hold" for `hold` seconds before the first byte."""

    name: str
    port: int
    log: Path
    hold: float = 0.0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.replica_app", self.name, str(self.port),
                 "--hold", str(self.hold)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )

    def wait_ready(self) -> None:
        wait_until_answers(self.url + "/models", self.proc, 30, f"replica {self.name}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def received(self, text: str) -> bool:
        return f"received: {text}" in self.log.read_text()


@dataclass
class GatewayProcess:
    """`coderapi serve` with every setting given as a flag; stdout kept (the bootstrap key)."""

    name: str
    port: int
    data_dir: Path
    flags: list[str]
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.data_dir.parent / f"gateway-{self.name}.out"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODERAPI_") or k.startswith("CODERAPI_TEST")}
        env["COLUMNS"] = "200"  # rich wraps nothing: one line per printed line
        command = [sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", str(self.data_dir), *self.flags]
        with self.stdout_path.open("w") as out, (self.data_dir.parent / f"gateway-{self.name}.err").open("w") as err:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=ROOT)

    def wait_healthy(self) -> None:
        wait_until_answers(self.base + "/health", self.proc, 120, f"gateway {self.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def printed_keys(self) -> list[str]:
        return [line.strip() for line in self.stdout_path.read_text().splitlines() if line.strip().startswith("cdr-")]


def gateway_flags(database_url: str, redis_url: str, *models: dict) -> list[str]:
    return ["--database-url", database_url, "--redis-url", redis_url, "--models", json.dumps(list(models)),
            "--log-level", "warning", "--shutdown-grace-seconds", "2"]


# clients -------------------------------------------------------------------------------------


def client(gateway: GatewayProcess, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.base, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                             limits=httpx.Limits(max_connections=200))


async def ask(http: httpx.AsyncClient, payload: dict, request_id: str) -> Seen:
    """One non-streamed request, recorded as the client saw it."""
    seen = Seen(request_id)
    response = await http.post("/v1/chat/completions", json=payload, headers={"x-request-id": request_id})
    seen.status = response.status_code
    seen.retry_after = response.headers.get("retry-after")
    data = response.json()
    if response.status_code != 200:
        seen.error = data["error"]
        return seen
    seen.text = data["choices"][0]["message"]["content"] or ""
    seen.finish_reason = data["choices"][0]["finish_reason"]
    seen.completion_tokens = data["usage"]["completion_tokens"]
    return seen


async def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)
