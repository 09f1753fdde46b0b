"""Soak: a fixed concurrency (32) of streamed chat completions on the real embedded model through
`coderapi serve`, for a bounded time. A benchmark, not a test: it prints what it measured.

    .venv/bin/python bench/soak.py [--duration 180] [--concurrency 32] [--max-tokens 64] [--warmup 30] [--drain 60]

Reports: requests and errors (no error is planned: every one is unplanned), the server's VmRSS at
start (loaded, idle), after the warm-up and at the end, the drift from warm-up to end in %,
throughput (requests/s, output tokens/s), usage rows against requests, and the machine.
After the duration no request is started; those still running after `--drain` more seconds are
cut (planned, counted apart: they keep the run bounded on a slow machine).
Rate and concurrency limits are switched off for the run (CODERAPI_DEFAULT_RPM/TPM=0, ...): the load is the point.
Exit status 1 when a request failed or RSS drifted more than --max-drift percent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import servers  # noqa: E402

PROMPTS = [
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain what a Python generator is, with a short example.",
    "Write a SQL query that returns the ten most recent orders per customer.",
    "Write a bash one-liner that counts lines in every .py file under a directory.",
    "Write a TypeScript interface for a paginated API response.",
    "Write a Rust function that reverses a vector in place.",
    "What does the `with` statement do in Python?",
    "Write a Go HTTP handler that returns the current time as JSON.",
]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB; load average (1/5/15 min) at start: {load}"


@contextmanager
def coderapi_serve(data_dir: Path) -> Iterator[servers.Server]:
    port = servers.free_port()
    env = {**os.environ, "CODERAPI_DATA_DIR": str(data_dir), "CODERAPI_MODEL_CACHE_DIR": str(servers.MODEL_CACHE),
           "CODERAPI_DEFAULT_RPM": "0", "CODERAPI_DEFAULT_TPM": "0",
           "CODERAPI_DEFAULT_USER_RPM": "0", "CODERAPI_DEFAULT_USER_TPM": "0", "CODERAPI_LOG_LEVEL": "warning",
           "CODERAPI_MAX_CONCURRENT_REQUESTS_PER_KEY": "0", "CODERAPI_MAX_CONCURRENT_REQUESTS_PER_USER": "0"}
    with (data_dir / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=servers.ROOT,
        )
    try:
        key = servers.bootstrap_key(proc)
        base = f"http://127.0.0.1:{port}"
        servers._wait_ready(proc, f"{base}/health")
        yield servers.Server("coderapi", base, proc.pid, {"Authorization": f"Bearer {key}"},
                             "Qwen/Qwen2.5-Coder-0.5B-Instruct")
    finally:
        servers._stop(proc)


async def soak(server: servers.Server, args) -> tuple[list[loadgen.Result], dict[str, int], float, int]:
    """Runs `args.concurrency` clients back to back until the duration is over; returns the
    results, the RSS samples, the wall time and how many requests the drain limit cut."""
    results: list[loadgen.Result] = []
    rss = {"start": server.rss_kib()}
    url = f"{server.base_url}/v1/chat/completions"
    started = time.monotonic()
    stop_at = started + args.duration
    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(headers=server.headers, timeout=httpx.Timeout(600.0), limits=limits) as client:
        async def client_loop(i: int) -> None:
            n = 0
            while time.monotonic() < stop_at:
                body = {"model": server.model, "messages": [{"role": "user", "content": PROMPTS[(i + n) % len(PROMPTS)]}],
                        "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                        "stream_options": {"include_usage": True}}
                results.append(await loadgen.one_request(client, url, body))
                n += 1

        async def sample_after_warmup() -> None:
            await asyncio.sleep(min(args.warmup, args.duration))
            rss["warm"] = server.rss_kib()
            print(f"  after warm-up ({args.warmup:.0f} s): {len(results)} requests done, VmRSS {rss['warm'] / 1024:.0f} MiB",
                  flush=True)

        sampler = asyncio.create_task(sample_after_warmup())
        clients = [asyncio.create_task(client_loop(i)) for i in range(args.concurrency)]
        _, running = await asyncio.wait(clients, timeout=args.duration + args.drain)
        for task in running:  # each holds one request in flight
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await sampler
    wall = time.monotonic() - started
    await asyncio.sleep(1.0)  # the server frees what the cut requests held
    rss["end"] = server.rss_kib()
    return results, rss, wall, len(running)


def usage_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM usage_events").fetchone()[0]


def report(results: list[loadgen.Result], rss: dict[str, int], wall: float, cut: int, rows: int | None, args) -> bool:
    ok = [r for r in results if r.ok]
    errors = [r for r in results if not r.ok]
    tokens = sum(r.output_tokens for r in ok)
    drift = (rss["end"] - rss["warm"]) / rss["warm"] * 100
    mib = {k: v / 1024 for k, v in rss.items()}
    print(f"requests: {len(results)} ({len(ok)} ok), errors: {len(errors)} (none planned); "
          f"cut by the {args.drain:.0f} s drain limit (planned): {cut}")
    for sample in sorted({r.error for r in errors})[:5]:
        print(f"  error: {sample}")
    print(f"VmRSS: start {mib['start']:.0f} MiB, after warm-up {mib['warm']:.0f} MiB, end {mib['end']:.0f} MiB; "
          f"drift warm-up -> end {drift:+.2f}% (limit {args.max_drift:.0f}%)")
    print(f"throughput: {len(ok) / wall:.2f} requests/s, {tokens / wall:.1f} output tokens/s "
          f"over {wall:.0f} s at concurrency {args.concurrency}, max_tokens {args.max_tokens}")
    if rows is not None:
        print(f"usage rows: {rows} for {len(results)} requests, {cut} cut, 1 warm-up")
    return not errors and abs(drift) <= args.max_drift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the warm RSS sample")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds after the duration before running requests are cut")
    parser.add_argument("--max-drift", type=float, default=5.0, help="RSS drift, in %%, that fails the run")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"soak: concurrency {args.concurrency}, {args.duration:.0f} s, max_tokens {args.max_tokens}, "
          "streamed chat completions, temperature 0, the embedded Qwen2.5-Coder-0.5B via `coderapi serve`", flush=True)
    data_dir = Path(tempfile.mkdtemp(prefix="coderapi-soak-"))
    try:
        with coderapi_serve(data_dir) as server:
            asyncio.run(loadgen.run_level(server.base_url, server.headers, {
                "model": server.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                "stream": True}, 1, 1))  # load the weights' pages before the start sample
            print(f"  server up: VmRSS {server.rss_kib() / 1024:.0f} MiB", flush=True)
            results, rss, wall, cut = asyncio.run(soak(server, args))
        rows = usage_rows(data_dir / "coderapi.db")
        passed = report(results, rss, wall, cut, rows, args)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
