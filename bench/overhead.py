"""Request overhead of auth + rate limits + money checks + metering, per inference call.

One app (scripted fake engine, no token delay, a two-token answer, SQLite in a temporary
directory), driven in-process through its ASGI interface by httpx (no sockets), N sequential
chat completions in alternating rounds of two modes:

  full  the app as it serves: key authentication (a database read), admission (RPM/TPM buckets,
        balance and spending-limit checks), metering (the usage row is written, and the balance
        debited, in a task of its own just after the answer)
  bare  the same app and route with those layers bypassed: a fixed principal, no admission,
        no usage row

The difference of the per-call medians is the overhead those layers add to a call. The usage
row write is measured on its own too, since it runs off the answer's path. With
--redis-url the limiter is Redis (one extra round trip per call).

    .venv/bin/python bench/overhead.py [--calls 2000] [--rounds 10] [--redis-url redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from coderapi.api.deps import key_principal  # noqa: E402
from coderapi.app import create_app  # noqa: E402
from coderapi.config import ModelSpec, Settings  # noqa: E402
from coderapi.engines.fake import FakeEngine  # noqa: E402
from coderapi.services.accounts import UsageRecord  # noqa: E402
from coderapi.services.endpoints import Endpoint  # noqa: E402
from coderapi.services.lifecycle import Lifecycle, parse_body  # noqa: E402
from coderapi.services.metering import Metering  # noqa: E402
from coderapi.services.request_life import RequestLife  # noqa: E402

MODEL = "Qwen/Qwen2.5-Coder-32B-Instruct"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}


def machine() -> str:
    cpu = "?"
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return (f"{platform.node()} · {os.cpu_count()} cores · {cpu} · Python {platform.python_version()} · "
            f"SQLite {sqlite3.sqlite_version}")


class _BareLifecycle(Lifecycle):
    """No gates: the body is parsed and the model resolved, nothing is checked or held."""

    async def _admit(self, life, endpoint, body):
        request = parse_body(endpoint.request_type, body)
        served = self._registry.resolve(request.model)
        life.admitted()
        return request, served


class _NoMetering(Metering):
    def record(self, life, ending) -> None:
        return None


class Layers:
    """Switches auth, admission and metering off (bare) and on again (full) on one app."""

    def __init__(self, app, principal) -> None:
        self.app, self.principal = app, principal
        services = app.state.services
        self.real = services.inference._lifecycle
        self.bypass = _BareLifecycle(services.registry, _NoMetering(services.leases, services.metrics), None)

    def set(self, full: bool) -> None:
        self.app.state.services.inference._lifecycle = self.real if full else self.bypass
        if full:
            self.app.dependency_overrides.pop(key_principal, None)
        else:
            self.app.dependency_overrides[key_principal] = lambda: self.principal


async def _calls(client: httpx.AsyncClient, headers: dict, n: int) -> float:
    """Seconds per call over n sequential calls."""
    started = time.perf_counter()
    for _ in range(n):
        response = await client.post("/v1/chat/completions", json=BODY, headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"unexpected {response.status_code}: {response.text}")
    return (time.perf_counter() - started) / n


async def _row_write(services, principal, n: int) -> float:
    record = UsageRecord(request_id="bench", user_id=principal.user_id, key_id=principal.key_id,
                         key_prefix=principal.key_prefix, model=MODEL, endpoint="chat.completions",
                         prompt_tokens=20, completion_tokens=3, cost=Decimal("0.000026"), status_code=200)
    started = time.perf_counter()
    for _ in range(n):
        await services.users.record_usage(record)
    return (time.perf_counter() - started) / n


async def _admissions(services, principal, n: int) -> float:
    lifecycle = services.inference._lifecycle
    body = json.dumps(BODY).encode()
    started = time.perf_counter()
    for _ in range(n):
        life = RequestLife(principal, "chat.completions", "bench", lambda life, ending: None)  # no row: measured on its own
        await lifecycle._admit(life, Endpoint.CHAT, body)
        await life.settle(25)
        life.end()
    return (time.perf_counter() - started) / n


async def _layer_costs(services, plain: str, limited: str, n: int) -> dict[str, float]:
    """Each layer alone, called n times in-process (seconds per call): a breakdown of the overhead."""
    accounts = services
    costs = {}
    started = time.perf_counter()
    for _ in range(n):
        await accounts.keys.authenticate_key(plain)
    costs["auth (key lookup in a worker thread)"] = (time.perf_counter() - started) / n
    principal = await accounts.keys.authenticate_key(plain)
    costs["admission (RPM/TPM buckets, balance) + settle"] = await _admissions(services, principal, n)
    principal = await accounts.keys.authenticate_key(limited)
    costs["  the same, the key having a spending limit"] = await _admissions(services, principal, n)
    return costs


async def run(calls: int, rounds: int, redis_url: str | None, data_dir: Path) -> None:
    spec = ModelSpec(id="Qwen/Qwen2.5-Coder-0.5B-Instruct", aliases=[MODEL], backend="fake",
                     price_input_per_million=0.07, price_output_per_million=0.16)
    settings = Settings(data_dir=data_dir, models=[spec], bootstrap_admin=False, redis_url=redis_url,
                        default_rpm=10**9, default_tpm=10**12, default_user_rpm=10**9,
                        default_user_tpm=10**12, starting_credit=10**6)
    app = create_app(settings, engine_factory=lambda s: FakeEngine(script=lambda prompt: "ok", token_delay=0.0))
    services = app.state.services
    async with app.router.lifespan_context(app):
        user = await services.signups.create_user("bench@example.com", "correct horse battery")
        _, plain = await services.keys.create_key(user.id, name="plain")
        _, limited = await services.keys.create_key(
            user.id, name="limited", limit_threshold=10**6, limit_retention="month"
        )
        principal = await services.keys.authenticate_key(plain)
        layers = Layers(app, principal)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            modes = {
                "bare": ({"Authorization": f"Bearer {plain}"}, False),
                "full": ({"Authorization": f"Bearer {plain}"}, True),
                "full+limit": ({"Authorization": f"Bearer {limited}"}, True),
            }
            for headers, full in modes.values():  # warm up every path
                layers.set(full)
                await _calls(client, headers, max(50, calls // 20))
                await services.metering.drain()
            per_call: dict[str, list[float]] = {name: [] for name in modes}
            for _ in range(rounds):
                for name, (headers, full) in modes.items():
                    layers.set(full)
                    per_call[name].append(await _calls(client, headers, calls // rounds))
                    await services.metering.drain()
            layers.set(True)
        write = await _row_write(services, principal, max(200, calls // 5))
        costs = await _layer_costs(services, plain, limited, max(200, calls // 5))
    costs["usage row write + balance debit (after the answer)"] = write
    report(calls, rounds, redis_url, per_call, costs)


def report(calls: int, rounds: int, redis_url: str | None, per_call: dict[str, list[float]], costs: dict) -> None:
    ms = {name: statistics.median(values) * 1000 for name, values in per_call.items()}
    print(f"machine: {machine()}")
    print(f"limiter: {'redis ' + redis_url if redis_url else 'in-process'}; {calls} calls per mode in {rounds} rounds")
    for name, value in ms.items():
        spread = f"{min(per_call[name]) * 1000:.3f}-{max(per_call[name]) * 1000:.3f}"
        print(f"  {name:<11} {value:7.3f} ms/call (median of round means; rounds {spread})")
    best = {name: min(values) * 1000 for name, values in per_call.items()}
    print(f"overhead of auth + limits + money + metering: {ms['full'] - ms['bare']:.3f} ms/call "
          f"(fastest rounds: {best['full'] - best['bare']:.3f} ms/call)")
    print(f"  with a spending limit on the key (one more query): {ms['full+limit'] - ms['bare']:.3f} ms/call "
          f"(fastest rounds: {best['full+limit'] - best['bare']:.3f} ms/call)")
    print("each layer alone, in-process:")
    for name, seconds in costs.items():
        print(f"  {name:<52} {seconds * 1000:7.3f} ms/call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.calls, args.rounds, args.redis_url, Path(tmp)))


if __name__ == "__main__":
    main()
