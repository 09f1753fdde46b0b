"""A flood of dashboard sign-ins and sign-ups (distinct emails, so no per-email throttle helps)
must not slow API key lookups: argon2 runs in its own small pool, and what does not fit in its
queue is answered 503 with Retry-After at once.

The server is a real `coderapi serve` in a subprocess (scripted engine), so its thread pools,
its event loop and its GIL are its own, as in production; the flood and the probe are loopback
HTTP clients in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import SERVED_ID
from tests.servers import coderapi_serve

ROOT = Path(__file__).resolve().parents[2]
FLOOD = 160
# The target is a p50 under 50 ms; this loaded, shared 2-core test machine gets a looser
# bound that still fails when argon2 shares the default thread pool with key lookups.
P50_BOUND_S = 0.25


@pytest.fixture
def server(tmp_path):
    config = {
        "data_dir": str(tmp_path),
        "models": [{"id": SERVED_ID, "backend": "fake", "context_length": 4096}],
        "log_level": "warning",
        # A flood from many addresses: this one address must not be cut off by the per-address
        # throttle, so that every attempt reaches the password hashing.
        "login_max_failures_per_ip": 100_000,
        "signup_max_per_ip": 100_000,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODERAPI_")}
    with coderapi_serve(["--config", str(tmp_path / "config.json")], env=env, log_path=tmp_path / "server.log",
                        healthy_within=60) as served:
        assert served.key.startswith("cdr-"), served.key  # the first-start key, alone on its line
        yield served.base, served.key


async def _flood(base: str, started: threading.Event) -> list[int]:
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=FLOOD)) as http:
        page = await http.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        cookie = {"cookie": f"cdr_pre={page.cookies['cdr_pre']}"}  # explicit: no session cookie sneaks in

        async def attempt(i: int) -> int:
            email = f"flood-{i}@example.com"
            if i % 2:
                form = {"email": email, "password": "wrong password", "csrf_token": token}
                return (await http.post("/login", data=form, headers=cookie)).status_code
            form = {"email": email, "password": "flood password", "password_confirm": "flood password",
                    "csrf_token": token}
            return (await http.post("/signup", data=form, headers=cookie)).status_code

        tasks = [asyncio.create_task(attempt(i)) for i in range(FLOOD)]
        await asyncio.sleep(0.3)  # let every attempt reach the server before probing
        started.set()
        return await asyncio.gather(*tasks)


def test_key_lookups_stay_fast_during_a_sign_in_and_sign_up_flood(server):
    base, key = server
    started, statuses = threading.Event(), []
    flood = threading.Thread(target=lambda: statuses.extend(asyncio.run(_flood(base, started))))
    flood.start()
    assert started.wait(30)
    latencies = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        while flood.is_alive():  # every probe starts while the flood is on
            sent = time.perf_counter()
            assert http.get("/v1/key").status_code == 200
            latencies.append(time.perf_counter() - sent)
            time.sleep(0.02)
    flood.join(120)
    p50 = statistics.median(latencies)
    print(f"GET /v1/key during the flood: p50 {p50 * 1000:.1f} ms over {len(latencies)} requests; "
          f"flood statuses {sorted(set(statuses))}")
    assert len(latencies) >= 3, "the flood ended before the probe could measure it"
    assert p50 < P50_BOUND_S
    # What did not fit in the hashing queue was refused at once, never left waiting.
    assert set(statuses) <= {303, 401, 503}
    assert 503 in statuses
