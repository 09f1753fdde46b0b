"""Lone-client decode speed, coderapi against llama-server, paired request by request.

serve_bench.py's lone-client line is 2 requests per freshly started server, so it moves by ±5%
between repeats. Here every server runs at once (only one of them serves at a time), and each round
sends the same streamed greedy request to each in turn, the order rotating between rounds; a
coderapi variant's decode speed ((output tokens − 1) / time after the first token) over llama-server's
in the same round is one paired sample. Printed: every round, then per variant the median ratio and
a bootstrap 95% interval of it.

    .venv/bin/python bench/lone_decode.py [--rounds 12] [--max-tokens 256] [--llama-server PATH]
        [--variant 'no gate={"speculation_cost_gate": false}' --variant 'no n-gram={"speculation_ngram": false}']
        [--before /tmp/before]   # another revision too: git worktree add /tmp/before <rev>
        [--peer-huge-pages]      # and a second llama-server on huge pages, as coderapi's `huge_pages` does
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
import servers  # noqa: E402
from serve_bench import PROMPT  # noqa: E402
from single_stream import machine  # noqa: E402
from upstream_overhead import llama_server_binary  # noqa: E402

PEER = "llama-server"
HUGE_PEER = "llama-server (huge pages)"


async def decode_speed(server: servers.Server, max_tokens: int) -> tuple[float, int]:
    body = {"model": server.model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0, "max_tokens": max_tokens, **server.extra}
    async with httpx.AsyncClient(headers=server.headers, timeout=httpx.Timeout(600.0)) as client:
        result = await loadgen.one_request(client, f"{server.base_url}/v1/chat/completions", body)
    if not result.ok or not result.tpot:
        raise RuntimeError(f"{server.name}: {result.error or 'too short an answer'}")
    return 1 / result.tpot, result.output_tokens


def bootstrap_median(ratios: list[float], draws: int = 10_000, seed: int = 7) -> tuple[float, float]:
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[int(draws * 0.025)], medians[int(draws * 0.975) - 1]


def variant(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition("=")
    return name, json.loads(settings or "{}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--llama-server", default=None, help="the llama-server binary (default: the cached build)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", type=variant, action="append", default=[],
                        help="NAME=JSON: another coderapi, with these model fields (the default one always runs)")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of another revision, served too as the variant 'before'")
    parser.add_argument("--peer-huge-pages", action="store_true",
                        help="also a llama-server with --load-mode none and GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
    args = parser.parse_args()
    from coderapi.weights.packaged import resolve_gguf

    gguf = Path(resolve_gguf("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m", servers.MODEL_CACHE))
    binary = Path(args.llama_server) if args.llama_server else llama_server_binary()
    variants = [("coderapi", {}), *args.variant]
    trees = {name: servers.ROOT for name, _ in variants}
    if args.before is not None:
        variants.append(("before", {}))
        trees["before"] = args.before.resolve()
    print(f"machine: {machine()}; {gguf.name}; {args.rounds} rounds of one streamed greedy request, "
          f"max_tokens {args.max_tokens}; coderapi variants: {variants}", flush=True)
    ratios: dict[str, list[float]] = {name: [] for name, _ in variants}
    over_before: list[float] = []  # this checkout's speed over the other revision's, per round
    over_huge_peer: dict[str, list[float]] = {name: [] for name, _ in variants}
    peer_gain: list[float] = []  # llama-server on huge pages over llama-server as it comes
    with ExitStack() as stack:
        every = [stack.enter_context(servers.coderapi(gguf, model_settings=settings or None, name=name,
                                                           tree=trees[name]))
                 for name, settings in variants]
        every.append(stack.enter_context(servers.llama_server(binary, gguf, args.threads, 8, 8192)))
        if args.peer_huge_pages:
            every.append(stack.enter_context(servers.llama_server(binary, gguf, args.threads, 8, 8192, huge_pages=True,
                                                                  name=HUGE_PEER)))
        for server in every:  # warm-up: the prompt cached, the first-request costs paid
            await decode_speed(server, 16)
        for i in range(args.rounds):
            order = every[i % len(every):] + every[: i % len(every)]
            speeds, tokens = {}, {}
            for server in order:
                speeds[server.name], tokens[server.name] = await decode_speed(server, args.max_tokens)
            for name, _ in variants:
                ratios[name].append(speeds[name] / speeds[PEER])
            if args.before is not None:
                over_before.append(speeds["coderapi"] / speeds["before"])
            if args.peer_huge_pages:
                for name, _ in variants:
                    over_huge_peer[name].append(speeds[name] / speeds[HUGE_PEER])
                peer_gain.append(speeds[HUGE_PEER] / speeds[PEER])
            print(f"  round {i}: " + ", ".join(f"{s.name} {speeds[s.name]:.2f} tok/s ({tokens[s.name]})" for s in every),
                  flush=True)
    print(f"\n{args.rounds} paired rounds; decode speed over llama-server's in the same round:")
    for name, settings in variants:
        low, high = bootstrap_median(ratios[name])
        print(f"| {name} | {json.dumps(settings) if settings else 'default'} | "
              f"{statistics.median(ratios[name]):.3f}× | {low:.3f}–{high:.3f} |")
    if peer_gain:
        print(f"\nover {HUGE_PEER} (--load-mode none, GLIBC_TUNABLES=glibc.malloc.hugetlb=1):")
        for name, _ in variants:
            low, high = bootstrap_median(over_huge_peer[name])
            print(f"| {name} | {statistics.median(over_huge_peer[name]):.3f}× | {low:.3f}–{high:.3f} |")
        low, high = bootstrap_median(peer_gain)
        print(f"{HUGE_PEER} over llama-server: {statistics.median(peer_gain):.3f}× ({low:.3f}–{high:.3f})")
    if over_before:
        low, high = bootstrap_median(over_before)
        print(f"this checkout over {args.before}: {statistics.median(over_before):.3f}× ({low:.3f}–{high:.3f})")


if __name__ == "__main__":
    asyncio.run(main())
