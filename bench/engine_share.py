"""One user's flood of many-choice generations against another user's one-token chats, on the embedded model.

`coderapi serve` (the default registry, a temporary data directory) gets two users: the flooder (the
bootstrap admin, two keys) and a victim. The victim sends a short chat completion every two seconds,
first alone, then while the flooder's workers keep streaming chats with `n: 8` and `--max-tokens`
each (every choice holds one of the model's places: its 8 sequence slots and the 64 waiting
places behind them), as many at once as its concurrency caps allow; with `--flood prompts` the
workers instead send ~6,000-token prompts of their own for one token each (each prompt's evaluation
holds a slot for a while, and every step's rows). Printed: the victim's answers
(status counts) and latency median and maximum in each phase, their ratio to the victim alone, and how
the flooder's requests were answered. With `--before DIR` (a worktree of another revision: `git
worktree add /tmp/before <rev>`) the same phases then run against that revision's server.

    .venv/bin/python bench/engine_share.py [--seconds 90] [--workers 12] [--max-tokens 300]
        [--flood choices|prompts] [--before DIR | --upstream LLAMA_SERVER]

With `--upstream`, the same phases run against coderapi in Coder mode in front of a llama-server
(`-np 8`, the same GGUF), first with `upstream_slots: 8` (the gateway queues, users in turn), then 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import multiprocessing
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import machine  # noqa: E402
from prep_flood import _cli, _line, served_from  # noqa: E402
from servers import CODERAPI_MODEL, ROOT  # noqa: E402

WORDS = "alpha beta gamma delta river stone cloud forest metal glass paper light shadow engine".split()
VICTIM_TIMEOUT = 150.0  # a victim request still unanswered then counts as "timeout"


def _victim(base: str, key: str, until: float) -> list[tuple[float, str]]:
    """A 4-token chat every two seconds: (seconds, status, with the error's code when refused)."""
    body = {"model": CODERAPI_MODEL, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hi."}]}
    seen = []
    with httpx.Client(base_url=base, timeout=VICTIM_TIMEOUT) as client:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                answer = client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
                outcome = str(answer.status_code)
                if answer.status_code != 200:
                    outcome += " " + str(answer.json().get("error", {}).get("code"))
            except httpx.TimeoutException:
                outcome = "timeout"
            seen.append((time.monotonic() - started, outcome))
            time.sleep(2)
    return seen


def _flood_body(flood: str, worker: int, rounds: int, max_tokens: int) -> dict:
    if flood == "prompts":  # a prompt of ~6,000 tokens of its own each time (no prefix cache), 1 token out
        words = (f"{WORDS[(worker * 31 + rounds * 7 + j) % len(WORDS)]}{worker}{rounds}{j}" for j in range(1200))
        return {"model": CODERAPI_MODEL, "max_tokens": 1,
                "messages": [{"role": "user", "content": "Summarize: " + " ".join(words)}]}
    return {"model": CODERAPI_MODEL, "n": 8, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
            "messages": [{"role": "user", "content": f"Write a long essay on topic number {worker}."}]}


async def _flooder(client: httpx.AsyncClient, worker: int, key: str, until: float, flood: tuple[str, int],
                   codes: Counter) -> None:
    rounds = 0
    while time.monotonic() < until:
        rounds += 1
        body = _flood_body(flood[0], worker, rounds, flood[1])
        try:
            async with client.stream("POST", "/v1/chat/completions", json=body,
                                     headers={"authorization": f"Bearer {key}"}) as answer:
                async for line in answer.aiter_lines():
                    if '"error"' in line and answer.status_code == 200:
                        codes["200, then an error event"] += 1
                        break
                    if time.monotonic() > until:
                        break
                codes[answer.status_code] += 1
                if answer.status_code != 200:
                    await asyncio.sleep(0.5)
        except httpx.TransportError as exc:
            codes[type(exc).__name__] += 1


def _flood(base: str, keys: list[str], workers: int, flood: tuple[str, int], until: float,
           report: multiprocessing.Queue) -> None:
    """In a process of its own, so that its reading does not slow the victim's client."""
    codes: Counter = Counter()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=600) as client:
            await asyncio.gather(*(
                _flooder(client, i, keys[i % len(keys)], until, flood, codes) for i in range(workers)
            ))

    asyncio.run(run())
    report.put(dict(codes))


def measure(root: Path, label: str, seconds: float, workers: int, flood: tuple[str, int], **env: str) -> None:
    with served_from(root, **env) as (_, base, data_dir):
        flooder = [_cli(root, "keys", "create", "admin@localhost", data_dir=data_dir) for _ in range(2)]
        _cli(root, "users", "create", "victim@example.com", data_dir=data_dir, stdin="victim password 123\n")
        victim = _cli(root, "keys", "create", "victim@example.com", data_dir=data_dir)
        seen = _victim(base, victim, time.monotonic() + 10)
        alone = statistics.median(s for s, _ in seen)
        print(_line(f"{label}: victim alone", seen, None, {}), flush=True)
        until = time.monotonic() + seconds
        report: multiprocessing.Queue = multiprocessing.Queue()
        flooding = multiprocessing.Process(target=_flood, args=(base, flooder, workers, flood, until, report))
        flooding.start()
        time.sleep(5)  # the flood holds the model's places
        seen = _victim(base, victim, until)
        codes = report.get(timeout=900)
        flooding.join()
        what = "~6,000-token prompts" if flood[0] == "prompts" else f"streaming n=8 × {flood[1]} tokens"
        print(_line(f"{label}: {workers} workers {what}", seen, alone, codes), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=300, help="of each of the flooder's choices")
    parser.add_argument("--flood", choices=["choices", "prompts"], default="choices",
                        help="choices: many-choice generations; prompts: long prompts, one token out")
    parser.add_argument("--before", type=Path, help="a worktree of the revision to compare with")
    parser.add_argument("--upstream", type=Path, metavar="LLAMA_SERVER",
                        help="instead: coderapi in front of this llama-server binary, with and without upstream_slots")
    args = parser.parse_args()
    print(machine())
    print("| phase | victim answers | victim p50 s | victim max s | p50 vs alone | flooder answers |")
    print("|---|---|---|---|---|---|")
    flood = (args.flood, args.max_tokens)
    if args.upstream is not None:
        upstream(args, flood)
        return
    measure(ROOT, "this revision", args.seconds, args.workers, flood)
    if args.before is not None:
        measure(args.before.resolve(), "before", args.seconds, args.workers, flood)


def upstream(args, flood: tuple[str, int]) -> None:
    """coderapi in Coder mode in front of one llama-server (-np 8) on the same GGUF: with the gateway's
    queue (upstream_slots 8), then without it (0: every request sent at once, queued by llama-server)."""
    from coderapi.config import EMBEDDED_MODEL
    from coderapi.weights.packaged import resolve_gguf
    from servers import MODEL_CACHE, llama_server

    gguf = Path(resolve_gguf(EMBEDDED_MODEL, MODEL_CACHE))
    with llama_server(args.upstream, gguf, threads=os.cpu_count() or 2, parallel=8, ctx_per_seq=8192) as server:
        for slots in (8, 0):
            models = [{"id": CODERAPI_MODEL, "backend": "upstream", "upstream_mode": "coder",
                       "upstream_api": "llama-server", "upstream_urls": [server.base_url + "/v1"],
                       "context_length": 8192, "upstream_slots": slots}]
            measure(ROOT, f"llama-server -np 8, upstream_slots {slots}", args.seconds, args.workers, flood,
                    CODERAPI_MODELS=json.dumps(models))


if __name__ == "__main__":
    main()
