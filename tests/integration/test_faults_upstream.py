"""An upstream replica killed in mid-stream: the gateway (backend "upstream", a real uvicorn server)
in front of two replica processes on 127.0.0.1 (tests/integration/replica_app.py).

Requests that have not started streaming fail over with no failure; a stream that had started
ends with an error event, then [DONE]; the dead replica gets no traffic until its health check
passes again, then it gets traffic again; the usage rows reconcile with what the clients saw."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.faults import Seen, chat_body, new_id, post_chat, reconcile, rows_from_database, stream_chat
from tests.servers import free_port, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_MODEL = "gateway/replicated"


@contextmanager
def replica(name: str, port: int, log: Path, hold: float = 0.0):
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.replica_app", name, str(port), "--hold", str(hold)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, f"replica {name} did not start"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def gateway(tmp_path):
    from coderapi.app import create_app
    from coderapi.config import ModelSpec, Settings

    ports = {"A": free_port(), "B": free_port()}
    logs = {name: tmp_path / f"replica-{name}.log" for name in ports}
    urls = [f"http://127.0.0.1:{ports[name]}/v1" for name in ("A", "B")]
    spec = ModelSpec(id=GATEWAY_MODEL, backend="upstream", upstream_mode="passthrough", upstream_urls=urls, upstream_model="replica-model",
                     price_input_per_million=1.0, price_output_per_million=2.0)
    settings = Settings(data_dir=tmp_path / "gateway", models=[spec], bootstrap_admin=False)
    app = create_app(settings)
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user("gw-faults@example.com", "correct horse battery")
        return (await services.keys.create_key(user.id, name="gw"))[1]

    key = asyncio.run(seed())
    with replica("A", ports["A"], logs["A"], hold=60) as a, replica("B", ports["B"], logs["B"]):
        with serve_in_thread(app, wait_healthy=15) as base:
            yield base, key, services, a, ports, logs


def _served_by(seen: Seen) -> str:
    return seen.text[:1]


async def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _kill_in_mid_stream(base: str, key: str, replica_a: subprocess.Popen, log_a: Path):
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
        # First, a request replica A holds before its first byte (least outstanding: A is first).
        held = Seen(new_id("held"))
        held_task = asyncio.create_task(stream_chat(client, chat_body("hold: not started yet", 5, model=GATEWAY_MODEL),
                                                    held.request_id, seen=held))
        await _wait_for(lambda: "hold: not started yet" in log_a.read_text(), 20, "replica A never got the held request")
        # Then four long streams, spread over both replicas; A is killed once all are streaming.
        streams = [Seen(new_id(f"long{i}")) for i in range(4)]
        tasks = [asyncio.create_task(stream_chat(client, chat_body(f"long {i}", 200, model=GATEWAY_MODEL),
                                                 s.request_id, seen=s)) for i, s in enumerate(streams)]
        await _wait_for(lambda: all(s.chunks >= 2 for s in streams), 30, "streams did not start")
        replica_a.send_signal(signal.SIGKILL)
        replica_a.wait()
        # Requests sent right after the kill fail over to B, streamed or not.
        after = await asyncio.gather(*(
            stream_chat(client, chat_body(f"after {i}", 5, model=GATEWAY_MODEL), new_id(f"after{i}")) for i in range(3)
        ))
        await asyncio.gather(held_task, *tasks)
    return held, streams, list(after)


def test_a_replica_killed_in_mid_stream(gateway):
    base, key, services, replica_a, ports, logs = gateway
    held, streams, after = asyncio.run(_kill_in_mid_stream(base, key, replica_a, logs["A"]))
    after += [post_chat(base, key, chat_body(f"after {i}", 5, stream=False, model=GATEWAY_MODEL), new_id(f"json{i}"))
              for i in range(3)]

    on_a = [s for s in streams if _served_by(s) == "A"]
    on_b = [s for s in streams if _served_by(s) == "B"]
    assert on_a and on_b, [s.text[:8] for s in streams]
    for s in on_a:  # started on A: an error event, then [DONE]
        assert s.status == 200 and s.done and s.error is not None, s
        assert s.error["type"] == "upstream_error" and s.error["code"] == "upstream_stream_error", s
    for s in on_b:
        assert s.error is None and s.done and s.completion_tokens == 200, s
    # Not yet streaming when A died: failed over, no failure at all.
    assert held.status == 200 and held.error is None and _served_by(held) == "B" and held.completion_tokens == 5
    for s in after:  # A is dead and marked so: everything goes to B
        assert s.status == 200 and s.error is None and _served_by(s) == "B", s

    # A comes back on its port: once its health check passes, it is used again.
    probes: list[Seen] = []
    with replica("A", ports["A"], logs["A"]):
        deadline = time.monotonic() + 30
        while not probes or _served_by(probes[-1]) != "A":
            assert time.monotonic() < deadline, "the replica that came back was never used again"
            time.sleep(0.5)
            probes.append(post_chat(base, key, chat_body("probe", 3, stream=False, model=GATEWAY_MODEL), new_id("probe")))
            assert probes[-1].status == 200, probes[-1]

    rows = reconcile(rows_from_database(services.db), [held, *streams, *after, *probes])
    assert all(rows.status(s.request_id) == "error" for s in on_a)
