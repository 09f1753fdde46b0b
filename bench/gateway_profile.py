"""Where coderapi's gateway CPU goes: bench/gateway.py's coderapi target alone, in front of the
instant upstream, at c=64 for a bounded time per mode; prints CPU milliseconds per request (the
gateway's process tree) and, with --py-spy, records a flame graph / speedscope profile of it.

    .venv/bin/python bench/gateway_profile.py [--seconds 10] [--c1 N] [--py-spy OUT_PREFIX] [--serve-flag ...]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway  # noqa: E402
from gateway_report import percentile  # noqa: E402


async def sequential(targets: list[gateway.Target], n: int, modes: list[str]) -> None:
    """c=1: n requests one after the other per target and mode; the gateway's added latency."""
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        for mode in modes:
            body = gateway.MODES[mode]
            p50 = {}
            for target in targets:
                await gateway.sequential(client, target, body, 20)  # warm-up
                latencies = await gateway.sequential(client, target, body, n)
                p50[target.name] = percentile(latencies, 0.5) * 1000
                print(f"{mode:<12} c=1 {target.name:<8} p50 {p50[target.name]:.2f} ms, "
                      f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms", flush=True)
            print(f"{mode:<12} c=1 added p50 {p50['coderapi'] - p50['upstream']:.2f} ms", flush=True)


async def load(target: gateway.Target, seconds: float, concurrency: int, modes: list[str]) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=1.0)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=60, trust_env=False))
                   for _ in range(concurrency)]
        for body in gateway.MODES.values():  # warm-up
            await gateway.concurrent(clients, target, body, 200, 30)
        for mode in modes:
            body = gateway.MODES[mode]
            latencies, wall, cpu = await gateway.concurrent(clients, target, body, 10**9, seconds)
            print(f"{mode:<12} {len(latencies)} requests in {wall:.1f} s: {len(latencies) / wall:.0f} req/s, "
                  f"{cpu * 1000 / len(latencies):.2f} CPU-ms per request, "
                  f"{len(latencies) / cpu:.0f} per CPU-s, p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                  f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--py-spy", type=Path, default=None, help="record a py-spy profile to this prefix")
    parser.add_argument("--mode", action="append", choices=list(gateway.MODES), help="default: both")
    parser.add_argument("--serve-flag", action="append", default=[], help="extra `coderapi serve` argument")
    parser.add_argument("--c1", type=int, default=0, help="also N sequential requests (c=1) per mode, upstream alone too")
    args = parser.parse_args()
    gateway.CAPS_OFF = [*gateway.CAPS_OFF, *args.serve_flag]
    logs = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    with ExitStack() as stack:
        upstream = stack.enter_context(gateway.instant_upstream(logs))
        target = stack.enter_context(gateway.coderapi(upstream.base_url, logs))
        spy = None
        if args.py_spy:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(target.pid),
                                    "--subprocesses", "--rate", "250", "--format", "speedscope",
                                    "-o", f"{args.py_spy}.speedscope.json"], stdout=subprocess.DEVNULL)
        if args.c1:
            asyncio.run(sequential([upstream, target], args.c1, args.mode or list(gateway.MODES)))
        if args.seconds > 0:
            asyncio.run(load(target, args.seconds, args.concurrency, args.mode or list(gateway.MODES)))
        if spy is not None:
            spy.send_signal(2)  # SIGINT: py-spy writes the profile and exits
            spy.wait(60)
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
