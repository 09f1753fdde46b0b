"""SIGTERM under load on a real `coderapi serve` (the embedded model): every request already
received, running or still queued for a slot, is answered in full, and the usage rows match."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import ALIAS_ID, SERVED_ID
from tests.integration.faults import (
    Seen,
    chat_body,
    new_id,
    post_chat,
    read_event,
    reconcile,
    rows_from_sqlite,
)
from tests.servers import coderapi_serve

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
N_PARALLEL = 2  # 8 requests: 2 run, 6 wait for a slot when SIGTERM comes
MAX_TOKENS = 32


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("llama_cpp")
    # One llama.cpp thread: on a loaded machine its threads would wait on each other at every barrier.
    model = {"id": SERVED_ID, "aliases": [ALIAS_ID], "n_parallel": N_PARALLEL, "context_length": 2048, "n_threads": 1,
             "price_input_per_million": 0.07, "price_output_per_million": 0.16}
    env = {
        **os.environ,
        "CODERAPI_DATA_DIR": str(tmp_path),
        "CODERAPI_MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
        "CODERAPI_MODELS": json.dumps([model]),
        "CODERAPI_SHUTDOWN_GRACE_SECONDS": "120",  # long enough for the whole queue: drained, not cut
        "CODERAPI_LOG_LEVEL": "warning",
    }
    with coderapi_serve([], env=env, log_path=tmp_path / "server.log", healthy_within=180) as served:
        yield served.proc, served.base, served.key, tmp_path / "coderapi.db"


def test_sigterm_under_load_drains_every_request(server):
    proc, base, key, db = server
    seen: list[Seen] = []
    streams = [Seen(new_id(f"stream{i}")) for i in range(6)]
    started = threading.Event()

    def run(body: dict, request_id: str) -> None:
        seen.append(post_chat(base, key, body, request_id, timeout=300))

    def run_stream(s: Seen) -> None:  # fills `s` as chunks arrive, so the test sees them start
        headers = {"Authorization": f"Bearer {key}", "x-request-id": s.request_id}
        body = chat_body(f"Write a poem about {s.request_id[-4:]}.", MAX_TOKENS, endless=True)
        with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=headers, timeout=300) as response:
            s.status = response.status_code
            for line in response.iter_lines():
                if line.startswith("data: "):
                    read_event(s, line[6:])
                    started.set()
        seen.append(s)

    threads = [threading.Thread(target=run_stream, args=(s,)) for s in streams]
    threads += [threading.Thread(target=run, args=(chat_body(f"Name {i} colours.", MAX_TOKENS, stream=False, endless=True),
                                                   new_id(f"json{i}"))) for i in range(2)]
    for t in threads:
        t.start()
    assert started.wait(120)
    time.sleep(0.3)  # every request has been read by the server (they were sent together)
    running = sum(1 for s in streams if s.chunks)
    assert running <= N_PARALLEL and any(not s.chunks for s in streams)  # some were still queued
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):  # no new connections once draining
        httpx.get(base + "/health", timeout=2)
    for t in threads:
        t.join(300)
    assert proc.wait(60) in (0, -signal.SIGTERM)

    assert len(seen) == 8
    for s in seen:
        assert s.status == 200 and s.error is None and s.finish_reason == "length", s
        assert s.completion_tokens == MAX_TOKENS, s
    assert all(s.done for s in streams)
    rows = reconcile(rows_from_sqlite(db), seen, timeout=5)
    assert all(rows.status(s.request_id) == "success" for s in seen)
