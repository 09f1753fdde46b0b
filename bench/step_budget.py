"""The embedded engine's prompt rows per step beside decoding streams, side by side.

Each step of the embedded engine feeds a token for every decoding sequence and gives the rest of its
rows (512 at most, `prompt_rows_while_decoding` at most while any sequence decodes) to chunks of prompts
being evaluated, so every stream waits one whole step per token while prompts arrive. This script
starts `coderapi serve` with each `--rows` value in turn (the order alternating between repeats, each
server fresh) and measures, on the same requests:

- 8 clients sending distinct prompts (bench/varied_prompts.py, 100-900 tokens each), streamed, greedy,
  `--max-tokens` each: aggregate tokens/s, time to first token, the gaps between a stream's tokens
  (inter-token latency) and its mean time per output token;
- 4 streams of 400 tokens decoding when a ~3,300-token prompt (a new one each time: nothing cached)
  arrives: that prompt's time to its one token, and the longest gap in the streams meanwhile.

Printed: each repeat's line per value, then the medians and their ratio to the first value's.

    .venv/bin/python bench/step_budget.py [--rows 128,256,512] [--reps 3] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import servers  # noqa: E402
from overhead import machine  # noqa: E402
from varied_prompts import varied_prompt  # noqa: E402

CLIENTS = 8
MEASURES = ("agg_tok_s", "ttft_p50", "itl_p50", "itl_p90", "itl_p99", "tpot_p50", "long_prompt_ttft", "streams_max_gap")


def _long_prompt(index: int) -> str:
    """About 3,000 tokens of standard-library code, different for every index."""
    import difflib

    lines = inspect.getsource(difflib).splitlines()
    start = (index * 97) % (len(lines) - 330)
    return f"Request {index}. Summarize this code.\n\n```python\n" + "\n".join(lines[start : start + 330]) + "\n```"


async def _long_prompt_beside_streams(server: servers.Server, shared: dict, index: int) -> tuple[float, float]:
    """A long prompt sent while 4 streams decode: its time to first token, the streams' longest gap."""
    streams = [{**shared, "max_tokens": 400, "messages": [{"role": "user", "content": varied_prompt(5000 + 4 * index + i)}]}
               for i in range(4)]
    long = {**shared, "max_tokens": 1, "messages": [{"role": "user", "content": _long_prompt(index)}]}
    async with httpx.AsyncClient(headers=server.headers, timeout=600) as client:
        url = f"{server.base_url}/v1/chat/completions"
        running = [asyncio.create_task(loadgen.one_request(client, url, body)) for body in streams]
        await asyncio.sleep(8.0)  # the streams' prompts evaluated, all decoding
        long_result = await loadgen.one_request(client, url, long)
        results = await asyncio.gather(*running)
    if not long_result.ok or not all(r.ok for r in results):
        raise RuntimeError(f"a request failed: {[r.error for r in (long_result, *results) if not r.ok]}")
    return long_result.ttft, max(max(r.itls, default=0.0) for r in results)


async def measure(gguf: Path, rows: int, rep: int, max_tokens: int) -> dict:
    with servers.coderapi(gguf, model_settings={"prompt_rows_while_decoding": rows}, name=f"prompt rows {rows}") as server:
        shared = {"model": server.model, "stream": True, "stream_options": {"include_usage": True},
                  "temperature": 0, "max_tokens": max_tokens}
        await loadgen.run_level(server.base_url, server.headers,
                                {**shared, "messages": [{"role": "user", "content": "Say hi."}]}, 1, 1)  # warm-up
        offset = 1000 + rep * CLIENTS * 2  # the same prompts for every value in one repeat
        body = lambda i: {**shared, "messages": [{"role": "user", "content": varied_prompt(offset + i)}]}  # noqa: E731
        row = loadgen.summarize(*await loadgen.run_level(server.base_url, server.headers, body, CLIENTS,
                                                         CLIENTS * 2), CLIENTS)
        row["long_prompt_ttft"], row["streams_max_gap"] = await _long_prompt_beside_streams(server, shared, rep)
    print(f"  rep {rep} prompt_rows_while_decoding {rows}: " + ", ".join(f"{m} {row[m]:.3f}" for m in MEASURES)
          + f", errors {row['errors']}", flush=True)
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="128,512", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    from coderapi.weights.packaged import resolve_gguf

    gguf = Path(resolve_gguf("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m", servers.MODEL_CACHE))
    print(f"machine: {machine()}; {gguf.name}; {CLIENTS} clients, varied prompts, {args.max_tokens} tokens each")
    runs: dict[int, list[dict]] = {rows: [] for rows in args.rows}
    for rep in range(args.reps):
        order = args.rows if rep % 2 == 0 else list(reversed(args.rows))
        for rows in order:
            runs[rows].append(await measure(gguf, rows, rep, args.max_tokens))
    base = args.rows[0]
    medians = {rows: {m: statistics.median(r[m] for r in runs[rows]) for m in MEASURES} for rows in args.rows}
    print(f"\nmedians of {args.reps} repeats; ratio: the value's measure over prompt_rows_while_decoding {base}'s "
          "(aggregate tokens/s: > 1 is better; times: < 1 is better)")
    print("| prompt_rows_while_decoding | " + " | ".join(MEASURES) + " |")
    print("|---" * (len(MEASURES) + 1) + "|")
    for rows in args.rows:
        cells = [f"{medians[rows][m]:.3f} ({medians[rows][m] / medians[base][m]:.2f}×)" for m in MEASURES]
        print(f"| {rows} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
