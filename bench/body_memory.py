"""The server's memory while one key sends many 4 MiB bodies at once.

`coderapi serve` on the embedded 0.5B (a temporary data directory); the bootstrap admin's key sends
`--connections` chat completions at once, each a 4 MiB prompt, and the server's resident memory is
sampled every 50 ms. Printed: resident memory before and at its peak, and the answers. With `--before
DIR` (a worktree of another revision) the same runs against that revision's server, started from DIR's
sources in the same way, one server at a time.

    .venv/bin/python bench/body_memory.py [--connections 500] [--before DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import machine  # noqa: E402
from prep_flood import HUGE, _cli, served_from  # noqa: E402
from servers import CODERAPI_MODEL, ROOT  # noqa: E402


def _resident_mb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) // 1024


async def _burst(base: str, key: str, pid: int, connections: int) -> tuple[int, int, Counter]:
    body = json.dumps({"model": CODERAPI_MODEL, "messages": [{"role": "user", "content": HUGE}]}).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    before, peak, done = _resident_mb(pid), 0, asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _resident_mb(pid))
            await asyncio.sleep(0.05)

    async def one(client: httpx.AsyncClient):
        try:
            return (await client.post("/v1/chat/completions", content=body, headers=headers)).status_code
        except httpx.TransportError as exc:
            return type(exc).__name__

    sampler = asyncio.create_task(sample())
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=httpx.Limits(max_connections=connections)) as client:
        answers = Counter(await asyncio.gather(*(one(client) for _ in range(connections))))
    done.set()
    await sampler
    return before, peak, answers


def measure(root: Path, label: str, connections: int) -> None:
    with served_from(root) as (proc, base, data_dir):
        key = _cli(root, "keys", "create", "admin@localhost", data_dir=data_dir)
        before, peak, answers = asyncio.run(_burst(base, key, proc.pid, connections))
        print(f"| {label} | {connections} | {before} | {peak} | +{peak - before} | {dict(answers)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--before", type=Path, help="a worktree of the revision to compare with")
    args = parser.parse_args()
    print(machine())
    print("| revision | bodies at once | resident MB before | peak MB | growth MB | answers |")
    print("|---|---|---|---|---|---|")
    measure(ROOT, "this revision", args.connections)
    if args.before is not None:
        measure(args.before.resolve(), "before", args.connections)


if __name__ == "__main__":
    main()
