"""SIGTERM on a real `coderapi serve`: streams finish, or end cleanly after the grace period."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ALIAS_ID
from tests.servers import coderapi_serve

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 3


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("llama_cpp")
    env = {
        **os.environ,
        "CODERAPI_DATA_DIR": str(tmp_path),
        "CODERAPI_MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
        "CODERAPI_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "CODERAPI_LOG_LEVEL": "warning",
    }
    with coderapi_serve([], env=env, log_path=tmp_path / "server.log") as served:
        yield served.proc, served.base, served.key, tmp_path / "coderapi.db"


END_TOKENS = {"151643": -100, "151645": -100}  # Qwen2.5's <|endoftext|> and <|im_end|>


def stream(base: str, key: str, prompt: str, max_tokens: int, events: list, first: threading.Event,
           endless: bool = False) -> None:
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, **({"logit_bias": END_TOKENS} if endless else {})}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                first.set()


def test_sigterm_finishes_short_streams_and_cleanly_ends_long_ones(server):
    proc, base, key, db = server
    short, long_ = [], []
    short_started, long_started = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=stream, args=(base, key, "Write a Python hello world.", 24, short, short_started)),
        threading.Thread(target=stream, args=(base, key, "Count from 1 to 2000, one number per line.", 3000,
                                              long_, long_started, True)),  # cannot end within the grace
    ]
    for t in threads:
        t.start()
    assert short_started.wait(60) and long_started.wait(60)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):  # no new connections once draining
        httpx.get(base + "/health", timeout=2)
    for t in threads:
        t.join(60)
    # uvicorn re-raises the signal once its shutdown is done, so the exit status is SIGTERM's
    assert proc.wait(30) in (0, -signal.SIGTERM)
    elapsed = time.monotonic() - sent

    # The short answer ran to its end as usual.
    assert short[-1] == "[DONE]"
    finish = [json.loads(e)["choices"][0]["finish_reason"] for e in short[:-1] if json.loads(e).get("choices")]
    assert finish[-1] in ("stop", "length")
    # The long one was ended after the grace period: an error event, then [DONE]; never cut off.
    assert long_[-1] == "[DONE]"
    error = json.loads(long_[-2])["error"]
    assert "shutting down" in error["message"]
    assert GRACE_SECONDS <= elapsed < GRACE_SECONDS + 10
    # Both requests left a usage row.
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, finish_reason, completion_tokens FROM usage_events ORDER BY id").fetchall()
    assert len(rows) == 2
    assert any(status == "success" and reason == finish[-1] for status, reason, _ in rows), rows
    assert any(status == "error" and tokens > 0 for status, _, tokens in rows), rows
