"""What a k-row decode step costs next to a one-row step: the ceiling of speculative decoding here.

Speculative verification feeds a sequence's next token and k-1 drafted ones as k rows of one
llama_decode, each with logits. If every draft is accepted, k tokens cost one k-row step, so
k / cost(k) is the most any drafting scheme (predictions, n-grams, a draft model) can gain over
plain decoding on this machine, before the time to draft and the drafts rejected. Measured on
the embedded 0.5B with `--context` tokens cached, the step's median time over `--reps` rounds
that try every k in turn (the one-row step too); weight repacking on and off (unrepacked as
coderapi runs it with exact speculation: ggml's tiled K-quant matmul off, unless --tiled-kernel).
Row counts that are multiples of 4 cost least per row: the scheduler keeps to them (scheduler.py,
_whole_row_groups); try e.g. --rows 4,5,8,12,13,28,29,32,33.

    .venv/bin/python bench/step_rows.py [--rows 1,2,3,4,8,16,32,64] [--context 1024] [--reps 5] [--huge-pages]

`--huge-pages`: the model's memory on transparent huge pages, as the engine's `huge_pages` setting does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import llama_cpp as lc  # noqa: E402

from coderapi.engines.llama_cpp.invariance import _decode, keep_unrepacked_matmuls_on_one_path  # noqa: E402
from coderapi.engines.llama_cpp.huge_pages import onto_huge_pages  # noqa: E402
from coderapi.engines.llama_cpp.model import LlamaContext, LlamaModel, init_backend  # noqa: E402

GGUF = ROOT / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def step_costs(repack: bool, rows: list[int], context: int, reps: int, huge_pages: bool = False) -> dict[int, float]:
    with onto_huge_pages(huge_pages):
        model = LlamaModel(GGUF, repack=repack, huge_pages=huge_pages)
        ctx = LlamaContext(model, n_ctx=context + max(rows) + 16, n_seq_max=1, n_batch=512, n_threads=os.cpu_count())
    batch = lc.llama_batch_init(512, 0, 1)
    for i in range(512):
        batch.n_seq_id[i] = 1
    try:
        tokens = model.tokenize(json.decoder.__loader__.get_source("json.decoder") * 4, add_special=False)
        tokens = (tokens * (context // len(tokens) + 2))[: context + max(rows)]
        for start in range(0, context, 512):
            _decode(ctx, batch, tokens[start : min(context, start + 512)], start, logits=False)
        tries: dict[int, list[float]] = {k: [] for k in rows}
        for _ in range(reps):  # round robin over k: a slower spell of the host weighs on every k alike
            for k in rows:
                started = time.perf_counter()
                _decode(ctx, batch, tokens[context : context + k], context)  # every row with logits
                tries[k].append(time.perf_counter() - started)
                ctx.seq_rm(0, context, -1)
        return {k: statistics.median(t) for k, t in tries.items()}
    finally:
        lc.llama_batch_free(batch)
        ctx.free()
        model.free()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,2,3,4,8,16,32,64")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tiled-kernel", action="store_true",
                        help="leave ggml's tiled K-quant matmul on for unrepacked weights (coderapi turns it off "
                             "for unrepacked models with exact speculation)")
    parser.add_argument("--huge-pages", action="store_true", help="the model's memory on transparent huge pages")
    args = parser.parse_args()
    if not args.tiled_kernel:
        keep_unrepacked_matmuls_on_one_path()
    rows = sorted({1, *(int(r) for r in args.rows.split(","))})
    init_backend()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {platform.node()} · {os.cpu_count()} cores · {cpu}; {GGUF.name}; {args.context} tokens cached; "
          f"huge pages {'on' if args.huge_pages else 'off'}")
    print(f"{'rows k':>7} | {'repacked: cost(k)/cost(1)':>26} {'k/cost':>7} | {'not repacked: cost(k)/cost(1)':>30} {'k/cost':>7}")
    results = {repack: step_costs(repack, rows, args.context, args.reps, args.huge_pages) for repack in (True, False)}
    for k in rows:
        cells = []
        for repack in (True, False):
            cost = results[repack][k] / results[repack][1]
            cells.append(f"{cost:>26.2f} {k / cost:>6.2f}×" if repack else f"{cost:>30.2f} {k / cost:>6.2f}×")
        print(f"{k:>7} | {cells[0]} | {cells[1]}")
    print(f"one-row step: {results[True][1] * 1000:.1f} ms repacked, {results[False][1] * 1000:.1f} ms not")


if __name__ == "__main__":
    main()
