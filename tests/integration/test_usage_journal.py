"""Usage is written to the database in batches, but journaled on disk first: a gateway killed
(SIGKILL) after answering, before its batch reached the database, loses no usage and no money.

A real `coderapi serve` subprocess on SQLite, in front of a small upstream the test holds: the
requests are admitted (their holds committed), the database's write lock is then taken by the test
so that no settlement can commit, the upstream answers, the clients get their 200s, the gateway is
killed, and a fresh gateway on the same data directory writes the journaled rows and debits them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx

from tests.servers import ROOT, free_port

MODEL = "journal-model"
ANSWER = json.dumps({
    "id": "chatcmpl-j", "object": "chat.completion", "created": 1700000000, "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000},
}).encode()
# 1000 prompt tokens at $1/M + 2000 completion tokens at $2/M
COST = Decimal("0.005")


class HeldUpstream:
    """An OpenAI-compatible upstream whose chat answers wait until `release` is set."""

    def __init__(self) -> None:
        self.port = free_port()
        self.release = threading.Event()
        self.received = 0
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                               if line.lower().startswith("content-length:")), 0)
                await reader.readexactly(length)
                body = b'{"object":"list","data":[]}'
                if "/chat/completions" in head.split("\r\n", 1)[0]:
                    self.received += 1
                    await self._loop.run_in_executor(None, self.release.wait)
                    body = ANSWER
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def close(self) -> None:
        self.release.set()
        self._loop.call_soon_threadsafe(self._loop.stop)


def _gateway(data_dir: Path, upstream: HeldUpstream, port: int, log: Path) -> subprocess.Popen:
    config = data_dir / "config.json"
    config.write_text(json.dumps({"models": [{
        "id": MODEL, "backend": "upstream", "upstream_mode": "passthrough",
        "upstream_urls": [f"http://127.0.0.1:{upstream.port}/v1"],
        "price_input_per_million": 1.0, "price_output_per_million": 2.0,
    }]}))
    env = {**os.environ, "CODERAPI_DATA_DIR": str(data_dir / "data"), "CODERAPI_STARTING_CREDIT": "10"}
    argv = [sys.executable, "-m", "coderapi", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--database-timeout-seconds", "0.5"]
    with log.open("a") as err, (data_dir / "stdout.txt").open("a") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=ROOT)


def _wait(predicate, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _journal_lines(data_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (data_dir / "data" / "usage-journal").glob("*.jsonl"))


def _ask(base: str, key: str, request_id: str) -> httpx.Response:
    # A prompt that can be 1000 tokens: the gateway bills an upstream's count only up to the worst case.
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi " * 400}], "max_tokens": 2000}
    return httpx.post(base + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}", "X-Request-Id": request_id})


def test_usage_queued_when_the_gateway_is_killed_is_recorded_and_charged_by_the_next_start(tmp_path):
    upstream = HeldUpstream()
    port = free_port()
    base, log = f"http://127.0.0.1:{port}", tmp_path / "gateway.log"
    first = _gateway(tmp_path, upstream, port, log)
    database = tmp_path / "data" / "coderapi.db"
    try:
        _wait(lambda: _healthy(base), 60, "the gateway did not start")
        key = (tmp_path / "stdout.txt").read_text().splitlines()[0].strip()
        ids = [f"journal-{i}" for i in range(3)]
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(_ask, base, key, request_id) for request_id in ids]
            _wait(lambda: upstream.received == 3, 30, "the upstream never got the three requests")
            # Admitted (holds committed); now nothing more can commit: the test holds the write lock.
            lock = sqlite3.connect(database, timeout=5, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            upstream.release.set()
            assert [a.result().status_code for a in answers] == [200, 200, 200]
        _wait(lambda: _journal_lines(tmp_path) == 3, 10, "the three usage records were not journaled")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        recorded = lock.execute("SELECT count(*) FROM usage_events WHERE request_id LIKE 'journal-%'").fetchone()[0]
        unsettled = lock.execute("SELECT count(*) FROM cost_reservations WHERE settled_at IS NULL").fetchone()[0]
        # Killed with all three only in the journal, their money still held (the key's credit lease).
        assert recorded == 0 and unsettled >= 1
        lock.rollback()
        lock.close()

        second = _gateway(tmp_path, upstream, port, log)
        try:
            _wait(lambda: _healthy(base), 60, "the gateway did not start again")
        finally:
            second.terminate()
            second.wait(30)
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT request_id, status, cost FROM usage_events "
                              "WHERE request_id LIKE 'journal-%' ORDER BY request_id").fetchall()
            balance = db.execute("SELECT balance FROM users").fetchone()[0]
            unsettled = db.execute("SELECT count(*) FROM cost_reservations WHERE settled_at IS NULL").fetchone()[0]
        assert [(r[0], r[1]) for r in rows] == [(i, "success") for i in ids]
        assert all(Decimal(str(r[2])) == COST for r in rows)
        assert Decimal(str(balance)).quantize(COST) == Decimal(10) - 3 * COST
        assert unsettled == 0 and _journal_lines(tmp_path) == 0
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
        upstream.close()
