"""Gateway cost: coderapi and LiteLLM proxy side by side in front of one instant upstream, in one run.

A benchmark, not a test: it prints what it measured (and writes it as markdown with --markdown).
Everything listens on 127.0.0.1. Three targets, each answering the same bodies:

  upstream  bench/instant_upstream.py alone (the baseline: canned bytes, raw asyncio)
  coderapi  `coderapi serve` (one process; SQLite in a temporary data dir; model `bench-model` with
            backend "upstream" pointing at the instant upstream; every rate limit and concurrency cap
            off by flag; each request still authenticates its key, is admitted, metered and priced)
  litellm   LiteLLM proxy (`litellm --num_workers 1`, no database: master-key auth only, no spend rows),
            from its own venv, never .venv (its pins clash):
                python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]==1.108.7'

Modes: non-streamed and streamed (stream_options.include_usage; the upstream sends 4 deltas, a
finish chunk, a usage chunk and [DONE]). Per target and mode, in interleaved rounds (A B C A B C):
  c=1   N sequential requests: latency to the last byte; "added" = gateway percentile - upstream's
  c=64  64 concurrent clients for a bounded count (or time): requests/s, p50, p99, and requests per
        CPU-second of the target's process tree (utime+stime from /proc): the fair per-core figure
        on a small machine where the load generator and the upstream compete for the same cores.
Load generator: one Python process, 64 httpx.AsyncClients of one keep-alive connection each (one
shared pool of 64 was 4x slower); the upstream-alone c=64 figure is its ceiling.

    .venv/bin/python bench/gateway.py [--rounds 3] [--c1 300] [--c64 2000] [--c64-seconds 15]
                                      [--litellm .venv-litellm/bin/litellm] [--markdown docs/gateway-bench.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402
from gateway_report import Cell, report  # noqa: E402

MODEL = "bench-model"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
MODES = {"non-streamed": BODY, "streamed": STREAM_BODY}
CONCURRENCY = 64
CAPS_OFF = ["--default-rpm", "0", "--default-tpm", "0", "--default-user-rpm", "0", "--default-user-tpm", "0",
            "--max-concurrent-requests-per-key", "0", "--max-concurrent-requests-per-user", "0"]


@dataclass
class Target:
    name: str
    base_url: str  # ends with /v1
    pid: int
    headers: dict = field(default_factory=dict)


def _popen(argv: list[str], log: Path, env: dict | None = None, stdout=None) -> subprocess.Popen:
    with log.open("w") as sink:
        return subprocess.Popen(argv, env=env, stdout=stdout or sink, stderr=sink, text=True, cwd=HERE.parent,
                                start_new_session=True)


@contextmanager
def instant_upstream(logs: Path) -> Iterator[Target]:
    port = servers.free_port()
    proc = _popen([sys.executable, str(HERE / "instant_upstream.py"), str(port)], logs / "upstream.log")
    try:
        servers._wait_ready(proc, f"http://127.0.0.1:{port}/health", timeout=30)
        yield Target("upstream", f"http://127.0.0.1:{port}/v1", proc.pid)
    finally:
        servers._stop(proc)


@contextmanager
def coderapi(upstream: str, logs: Path) -> Iterator[Target]:
    port, data_dir = servers.free_port(), Path(tempfile.mkdtemp(prefix="coderapi-gw-bench-"))
    # passthrough: forwarded as OpenAI requests, as LiteLLM does (no chat template, no local tokenizer).
    spec = {"id": MODEL, "backend": "upstream", "upstream_mode": "passthrough", "upstream_urls": [upstream],
            "upstream_model": MODEL, "price_input_per_million": 0.07, "price_output_per_million": 0.16}
    config = data_dir / "config.json"
    config.write_text(json.dumps({"models": [spec]}))
    env = {**os.environ, "CODERAPI_DATA_DIR": str(data_dir / "data"), "CODERAPI_STARTING_CREDIT": "1000000",
           "CODERAPI_MODEL_CACHE_DIR": str(servers.MODEL_CACHE)}
    argv = [sys.executable, "-m", "coderapi", "serve", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", *CAPS_OFF]
    proc = _popen(argv, logs / "coderapi.log", env, stdout=subprocess.PIPE)
    try:
        key = servers.bootstrap_key(proc)
        servers._wait_ready(proc, f"http://127.0.0.1:{port}/health", timeout=120)
        yield Target("coderapi", f"http://127.0.0.1:{port}/v1", proc.pid, {"Authorization": f"Bearer {key}"})
    finally:
        servers._stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def litellm(binary: Path, upstream: str, logs: Path) -> Iterator[Target]:
    port, master = servers.free_port(), "sk-bench-master-key"
    config = logs / "litellm.yaml"  # JSON is YAML
    config.write_text(json.dumps({
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": upstream, "api_key": "sk-upstream"}}],
        "general_settings": {"master_key": master},
        "litellm_settings": {"telemetry": False},
    }))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False")
    argv = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = _popen(argv, logs / "litellm.log", env)
    try:
        servers._wait_ready(proc, f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
        yield Target("litellm", f"http://127.0.0.1:{port}/v1", proc.pid, {"Authorization": f"Bearer {master}"})
    finally:
        servers._stop(proc)


def cpu_seconds(root: int) -> float:
    """utime+stime of `root` and its descendants (a worker may be a child), in seconds."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    ticks = 0
    for pid in tree:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


async def one(client: httpx.AsyncClient, target: Target, body: dict) -> float:
    """Seconds to the last byte of one answer; an answer other than 200 (or a stream without
    [DONE]) stops the run: a benchmark of errors would be meaningless."""
    started = time.perf_counter()
    try:
        await _send(client, target, body)
    except httpx.TransportError as exc:
        raise SystemExit(f"{target.name}: {exc!r}") from exc
    return time.perf_counter() - started


async def _send(client: httpx.AsyncClient, target: Target, body: dict) -> None:
    if body.get("stream"):
        async with client.stream("POST", target.base_url + "/chat/completions", json=body,
                                 headers=target.headers) as response:
            text = (await response.aread()).decode()
            if response.status_code != 200 or "[DONE]" not in text:
                raise SystemExit(f"{target.name}: {response.status_code} {text[:500]}")
    else:
        response = await client.post(target.base_url + "/chat/completions", json=body, headers=target.headers)
        if response.status_code != 200 or not response.json().get("choices"):
            raise SystemExit(f"{target.name}: {response.status_code} {response.text[:500]}")


async def sequential(client, target: Target, body: dict, n: int) -> list[float]:
    return [await one(client, target, body) for _ in range(n)]


async def concurrent(clients, target: Target, body: dict, n: int, seconds: float):
    """Every client back to back until n requests are started or `seconds` passed; returns the
    latencies, the wall time and the target's CPU seconds over that time."""
    latencies: list[float] = []
    budget = iter(range(n))
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in budget:
            if time.perf_counter() > deadline:
                return
            latencies.append(await one(client, target, body))

    cpu, started = cpu_seconds(target.pid), time.perf_counter()
    await asyncio.gather(*(worker(client) for client in clients))
    return latencies, time.perf_counter() - started, cpu_seconds(target.pid) - cpu


async def measure(targets: list[Target], args) -> dict[tuple[str, str], Cell]:
    cells = {(t.name, mode): Cell() for t in targets for mode in MODES}
    # One client of one connection per simulated user: httpx's pool slows down with many connections
    # (about 4x fewer requests/s here with one pool of 64). Idle connections are dropped after 1 s,
    # before a server's keep-alive timeout (uvicorn: 5 s) can race a reuse into a ReadError.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=1.0)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=60, trust_env=False))
                   for _ in range(CONCURRENCY)]
        for target in targets:  # warm up every path (imports, pools, caches)
            for body in MODES.values():
                await concurrent(clients, target, body, 200, 30)
        for round_number in range(args.rounds):
            for mode, body in MODES.items():
                for target in targets:
                    cell = cells[(target.name, mode)]
                    cell.c1 += await sequential(clients[0], target, body, args.c1)
                    latencies, wall, cpu = await concurrent(clients, target, body, args.c64, args.c64_seconds)
                    cell.add_c64(latencies, wall, cpu)
                    print(f"round {round_number + 1}/{args.rounds} {mode:<12} {target.name:<8} "
                          f"c={CONCURRENCY}: {len(latencies)} in {wall:.1f} s, {cpu:.1f} CPU-s", flush=True)
    return cells


def versions(litellm_binary: Path) -> dict[str, str]:
    found = {"python": platform.python_version(), "httpx": httpx.__version__}
    try:
        import aiohttp  # coderapi's upstream client
        found["aiohttp"] = aiohttp.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version
        found["coderapi"] = version("coderapi")
    except Exception:  # noqa: BLE001 - a version is informative only
        found["coderapi"] = "?"
    python = litellm_binary.parent / "python"
    out = subprocess.run([str(python), "-c", "from importlib.metadata import version as v; print(v('litellm'))"],
                         capture_output=True, text=True)
    found["litellm"] = out.stdout.strip() or "?"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE.parent)
    found["coderapi commit"] = commit.stdout.strip() or "?"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every cell")
    parser.add_argument("--c1", type=int, default=300, help="sequential requests per cell and round")
    parser.add_argument("--c64", type=int, default=2000, help="requests at c=64 per cell and round (at most)")
    parser.add_argument("--c64-seconds", type=float, default=15, help="time cap of one c=64 phase")
    parser.add_argument("--litellm", type=Path, default=HERE.parent / ".venv-litellm" / "bin" / "litellm")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args()
    if not args.litellm.exists():
        raise SystemExit(f"{args.litellm} missing: python3 -m venv .venv-litellm && "
                         ".venv-litellm/bin/pip install 'litellm[proxy]==1.108.7'")
    logs = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            upstream = stack.enter_context(instant_upstream(logs))
            targets = [upstream, stack.enter_context(coderapi(upstream.base_url, logs)),
                       stack.enter_context(litellm(args.litellm, upstream.base_url, logs))]
            cells = asyncio.run(measure(targets, args))
    except BaseException:
        print(f"the servers' logs are kept in {logs}", file=sys.stderr)
        raise
    text = report(cells, versions(args.litellm), args, time.monotonic() - started)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
