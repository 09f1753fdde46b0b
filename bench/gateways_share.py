"""Two gateways in front of one llama-server: `upstream_slots` counted by each gateway, split by hand,
or shared through Redis.

Two `coderapi serve` processes (each its own SQLite data directory) run the Coder layer in front of
one llama-server (`-np 8`, the embedded GGUF). A flooder streams chats with `n: 8` and `--max-tokens`
per choice (every choice holds a place) from `--workers` workers, spread over both gateways
(`--flood-on both`) or all on gateway A (`--flood-on a`); a victim on gateway B sends a 4-token chat
every two seconds. Three ways to set the slots:
- `each 8`: `upstream_slots: 8` on each gateway, no Redis: up to 16 sent to a server that runs 8,
  the rest in its first-come queue;
- `each 4`: the count split by hand, 4 per gateway, no Redis;
- `shared 8`: `upstream_slots: 8` with `redis_url`: 8 across both (engines/shared_slots.py).
Printed per run: the victim's answers, latency median and maximum, and the flood's tokens per second
(content deltas received by the flooder, all choices together).

    .venv/bin/python bench/gateways_share.py LLAMA_SERVER [--redis-url redis://127.0.0.1:6379/14]
        [--seconds 60] [--workers 12] [--max-tokens 300] [--flood-on both,a] [--configs each8,each4,shared8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_share import _victim  # noqa: E402
from overhead import machine  # noqa: E402
from prep_flood import _cli, served_from  # noqa: E402
from servers import CODERAPI_MODEL, ROOT  # noqa: E402

CONFIGS = {"each8": ("each 8", 8, False), "each4": ("each 4", 4, False), "shared8": ("shared 8", 8, True)}


async def _flooder(base: str, key: str, worker: int, until: float, max_tokens: int, tally: Counter) -> None:
    body = {"model": CODERAPI_MODEL, "n": 8, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "messages": [{"role": "user", "content": f"Write a long essay on topic number {worker}."}]}
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        while time.monotonic() < until:
            async with client.stream("POST", "/v1/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key}"}) as answer:
                async for line in answer.aiter_lines():
                    if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                        tally["tokens"] += 1
                    if time.monotonic() > until:
                        break
                tally[str(answer.status_code)] += 1
                if answer.status_code != 200:
                    await asyncio.sleep(0.5)


def _flood(targets: list[tuple[str, str]], workers: int, until: float, max_tokens: int,
           report: multiprocessing.Queue) -> None:
    """In a process of its own, so that its reading does not slow the victim's client."""
    tally: Counter = Counter()

    async def run() -> None:
        await asyncio.gather(*(
            _flooder(*targets[i % len(targets)], i, until, max_tokens, tally) for i in range(workers)))

    asyncio.run(run())
    report.put(dict(tally))


def measure(server_url: str, config: str, flood_on: str, args) -> str:
    label, slots, shared = CONFIGS[config]
    models = [{"id": CODERAPI_MODEL, "backend": "upstream", "upstream_mode": "coder", "upstream_api": "llama-server",
               "upstream_urls": [server_url + "/v1"], "context_length": 8192, "upstream_slots": slots}]
    env = {"CODERAPI_MODELS": json.dumps(models)}
    if shared:
        env["CODERAPI_REDIS_URL"] = args.redis_url
        import redis

        prefix = f"coderapi:slots:{{{CODERAPI_MODEL}}}"  # a killed run's leases would hold places for 30 s
        redis.Redis.from_url(args.redis_url).delete(prefix, *(f"{prefix}:{k}" for k in ("queue", "queue-expiry", "arrivals")))
    with ExitStack() as stack:
        gateways = [stack.enter_context(served_from(ROOT, **env)) for _ in range(2)]
        keys = [_cli(ROOT, "keys", "create", "admin@localhost", data_dir=data_dir) for _, _, data_dir in gateways]
        b_data = gateways[1][2]
        _cli(ROOT, "users", "create", "victim@example.com", data_dir=b_data, stdin="victim password 123\n")
        victim = _cli(ROOT, "keys", "create", "victim@example.com", data_dir=b_data)
        targets = [(base, key) for (_, base, _), key in zip(gateways, keys)]
        if flood_on == "a":
            targets = targets[:1]
        until = time.monotonic() + args.seconds
        report: multiprocessing.Queue = multiprocessing.Queue()
        flooding = multiprocessing.Process(target=_flood, args=(targets, args.workers, until, args.max_tokens, report))
        flooding.start()
        started = time.monotonic()
        time.sleep(5)  # the flood holds the places
        seen = _victim(gateways[1][1], victim, until)
        tally = report.get(timeout=900)
        flooding.join()
        flood_seconds = time.monotonic() - started
    latencies = [s for s, _ in seen]
    statuses = dict(Counter(code for _, code in seen))
    answers = {k: v for k, v in tally.items() if k != "tokens"}
    return (f"| flood on {'A and B' if flood_on == 'both' else 'A'} | {label} | {statuses} | "
            f"{statistics.median(latencies):.2f} | {max(latencies):.2f} | {tally.get('tokens', 0) / flood_seconds:.1f} | {answers} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("llama_server", type=Path)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=300, help="of each of the flooder's choices")
    parser.add_argument("--flood-on", default="both,a")
    parser.add_argument("--configs", default="each8,each4,shared8")
    args = parser.parse_args()
    from coderapi.config import EMBEDDED_MODEL
    from coderapi.weights.packaged import resolve_gguf
    from servers import MODEL_CACHE, llama_server

    gguf = Path(resolve_gguf(EMBEDDED_MODEL, MODEL_CACHE))
    print(machine())
    print(f"{args.workers} flood workers, n=8 x {args.max_tokens} tokens, {args.seconds:.0f} s; victim: 4 tokens every 2 s on B\n")
    print("| flood | upstream_slots | victim answers | victim p50 s | victim max s | flood tokens/s | flood answers |")
    print("|---|---|---|---|---|---|---|")
    with llama_server(args.llama_server, gguf, threads=os.cpu_count() or 2, parallel=8, ctx_per_seq=8192) as server:
        for flood_on in args.flood_on.split(","):
            for config in args.configs.split(","):
                print(measure(server.base_url, config, flood_on, args), flush=True)


if __name__ == "__main__":
    main()
