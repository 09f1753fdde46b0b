"""One user's flood of 4 MiB prompts against another user's small chat requests, on the embedded model.

`coderapi serve` (the default registry, a temporary data directory) gets two users: the flooder, with
three keys, and a victim with one. The victim sends a one-token chat completion every second, first
alone, then while the flooder's workers send, as fast as they are answered, 4 MiB bodies each past
the context: chat completions from 30 workers over the three keys, then /tokenize from 70 workers
over one key, then bodies that are all JSON structure, the costliest to parse, from 30 workers over the
three keys: completions whose prompt is 2 million token ids, then /tokenize of one message in 160,000
empty content parts. Printed: the victim's answers (status counts) and latency median and maximum in each
phase, their ratio to the victim alone, and how the flooder's requests were answered. With
`--before DIR` (a worktree of another revision: `git worktree add /tmp/before <rev>`) the same
phases then run against that revision's server, started from DIR's sources in the same way.

    .venv/bin/python bench/prep_flood.py [--seconds 30] [--before DIR] [--phases chat,tokenize,ids,parts]

The flooder's client runs in a process of its own, on the same machine: it sends hundreds of MB/s and
takes CPU the server would have, so the ratios are an upper bound on what the server adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import machine  # noqa: E402
from servers import CODERAPI_MODEL, MODEL_CACHE, ROOT, _stop, _wait_ready, free_port  # noqa: E402

HUGE = "a" * (4 * 1024 * 1024 - 1024)


def _env(root: Path, **extra: str) -> dict[str, str]:
    """The environment that runs coderapi from `root`'s sources."""
    return {**os.environ, "PYTHONPATH": str(root / "src"), **extra}


def _cli(root: Path, *args: str, data_dir: str, stdin: str | None = None) -> str:
    command = [sys.executable, "-m", "coderapi", *args, "--database-url", f"sqlite:///{data_dir}/coderapi.db"]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=True, cwd=root, env=_env(root))
    return done.stdout.strip().splitlines()[-1]


def _victim(base: str, key: str, until: float) -> list[tuple[float, int]]:
    body = {"model": CODERAPI_MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    seen = []
    with httpx.Client(base_url=base, timeout=300) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            answer = client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
            seen.append((time.monotonic() - started, answer.status_code))
            time.sleep(1)
    return seen


async def _flooder(client: httpx.AsyncClient, path: str, body: bytes, key: str, until: float, codes: Counter) -> None:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    while time.monotonic() < until:
        try:
            answer = await client.post(path, content=body, headers=headers)
        except httpx.TransportError as exc:  # a pooled connection the server's keep-alive timeout closed
            codes[type(exc).__name__] += 1
            continue
        codes[answer.status_code] += 1
        if answer.status_code == 429:
            await asyncio.sleep(0.2)


def _flood(base: str, flood: tuple[str, bytes, list[str], int], until: float, report: multiprocessing.Queue) -> None:
    """In a process of its own, so that its sending does not slow the victim's client."""
    path, body, keys, count = flood
    codes: Counter = Counter()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=128)) as client:
            await asyncio.gather(*(_flooder(client, path, body, keys[i % len(keys)], until, codes) for i in range(count)))

    asyncio.run(run())
    report.put(dict(codes))


def _phase(base: str, victim: str, flood: tuple[str, bytes, list[str], int] | None, seconds: float):
    until = time.monotonic() + seconds
    if flood is None:
        return _victim(base, victim, until), {}
    report: multiprocessing.Queue = multiprocessing.Queue()
    flooder = multiprocessing.Process(target=_flood, args=(base, flood, until, report))
    flooder.start()
    time.sleep(1)  # the flood is under way
    seen = _victim(base, victim, until)
    codes = report.get(timeout=600)
    flooder.join()
    return seen, codes


def _line(name: str, seen: list[tuple[float, int]], alone: float | None, codes: Counter) -> str:
    latencies = [s for s, _ in seen]
    median = statistics.median(latencies)
    ratio = f"{median / alone:.1f}×" if alone else "1.0×"
    statuses = dict(Counter(code for _, code in seen))
    return (f"| {name} | {statuses} | {median:.2f} | {max(latencies):.2f} | {ratio} | "
            f"{dict(codes) if codes else '-'} |")


@contextmanager
def served_from(root: Path, **env: str) -> Iterator[tuple[subprocess.Popen, str, str]]:
    """`coderapi serve` run from `root`'s sources on a fresh data directory (`env`: more settings, as
    CODERAPI_* variables): (process, base URL, data directory), stopped and removed after."""
    data_dir = tempfile.mkdtemp(prefix="coderapi-bench-")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(root, CODERAPI_DATA_DIR=data_dir, CODERAPI_MODEL_CACHE_DIR=str(MODEL_CACHE), **env),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,  # a full pipe would block its log
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, f"{base}/health")
        yield proc, base, data_dir
    finally:
        _stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def measure(root: Path, label: str, seconds: float, phases: list[str]) -> None:
    """Every phase against a server run from `root`'s sources; prints a table row for each."""
    with served_from(root) as (_, base, data_dir):  # the flooder is the bootstrap admin, with keys of its own
        flooder = [_cli(root, "keys", "create", "admin@localhost", data_dir=data_dir) for _ in range(3)]
        _cli(root, "users", "create", "victim@example.com", data_dir=data_dir, stdin="victim password 123\n")
        victim = _cli(root, "keys", "create", "victim@example.com", data_dir=data_dir)
        chat = json.dumps({"model": CODERAPI_MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": HUGE}]})
        count = json.dumps({"model": CODERAPI_MODEL, "prompt": HUGE})
        ids = json.dumps({"model": CODERAPI_MODEL, "prompt": [1] * (len(HUGE) // 2)}, separators=(",", ":"))
        part = {"type": "text", "text": ""}
        parts = json.dumps({"model": CODERAPI_MODEL, "messages": [{"role": "user", "content": [part] * (len(HUGE) // 26)}]},
                           separators=(",", ":"))
        seen, codes = _phase(base, victim, None, min(seconds, 10))
        alone = statistics.median(s for s, _ in seen)
        print(_line(f"{label}: victim alone", seen, None, codes), flush=True)
        floods = {
            "chat": ("4 MiB chat prompts, 30 workers, 3 keys", ("/v1/chat/completions", chat.encode(), flooder, 30)),
            "tokenize": ("4 MiB /tokenize, 70 workers, 1 key", ("/tokenize", count.encode(), flooder[:1], 70)),
            "ids": ("4 MiB of prompt token ids (/v1/completions), 30 workers, 3 keys",
                    ("/v1/completions", ids.encode(), flooder, 30)),
            "parts": ("4 MiB of empty content parts (/tokenize), 30 workers, 3 keys",
                      ("/tokenize", parts.encode(), flooder, 30)),
        }
        for name, flood in (floods[phase] for phase in phases):
            time.sleep(65)  # the flooder's token buckets refill between phases
            seen, codes = _phase(base, victim, flood, seconds)
            print(_line(f"{label}: {name}", seen, alone, codes), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--before", type=Path, help="a worktree of the revision to compare with")
    parser.add_argument("--phases", default="chat,tokenize,ids,parts", help="floods to run, of chat, tokenize, ids, parts")
    args = parser.parse_args()
    phases = args.phases.split(",")
    print(machine())
    print("| phase | victim answers | victim p50 s | victim max s | p50 vs alone | flooder answers |")
    print("|---|---|---|---|---|---|")
    measure(ROOT, "this revision", args.seconds, phases)
    if args.before is not None:
        measure(args.before.resolve(), "before", args.seconds, phases)


if __name__ == "__main__":
    main()
