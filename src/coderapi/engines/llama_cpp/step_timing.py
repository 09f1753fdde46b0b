"""What a decode step costs by its rows on this machine, measured once at load (draft_value.py).

On sequence 0, with `LONG` tokens cached and then `SHORT` (fewer in a small context), each round
times a step of every row count in `ROW_COUNTS` (up to the most a step may verify), one after the
other, and the one-row step several times; the medians over the rounds are the costs. Sequence 0
may still hold the exactness probe's tokens (invariance.py; what they are does not matter here),
which saves evaluating the long context again. About 5 s on 2 cores for the 0.5B.
"""

from __future__ import annotations

import statistics
import time

import llama_cpp as lc

from .draft_value import StepCosts
from .invariance import PROBE_TEXT, _decode

ROW_COUNTS = (1, 2, 3, 4, 8, 16, 32, 64)
LONG, SHORT = 1024, 128
ROUNDS = 3
ONE_ROW_REPEATS = 3  # per round: the cheapest step is the noisiest


def measure_step_costs(model, ctx, batch, max_rows: int, n_ctx_per_seq: int, n_batch: int) -> StepCosts:
    """Steps of up to `max_rows` rows at two lengths of context within a sequence's; leaves sequence 0 empty."""
    max_rows = max(1, min(max_rows, n_ctx_per_seq // 2 - 1))
    counts = [k for k in ROW_COUNTS if k <= max_rows]
    long = min(LONG, n_ctx_per_seq - max_rows - 1)
    short = min(SHORT, long // 2)
    tokens = model.tokenize(PROBE_TEXT, add_special=False)
    tokens = (tokens * (1 + (long + max_rows) // len(tokens)))[: long + max_rows]
    try:
        cached = min(lc.llama_memory_seq_pos_max(ctx.mem, 0) + 1, long)
        ctx.seq_rm(0, cached, -1)
        for start in range(cached, long, n_batch):
            _decode(ctx, batch, tokens[start : min(long, start + n_batch)], start, logits=False)
        seconds = {}
        for length in (long, short):  # the long one first: shortening the cache is free
            ctx.seq_rm(0, length, -1)
            seconds[length] = _time_steps(ctx, batch, tokens, length, counts)
    finally:
        ctx.seq_rm(0, -1, -1)
    return StepCosts(tuple(counts), (short, long), (seconds[short], seconds[long]))


def _time_steps(ctx, batch, tokens: list[int], cached: int, counts: list[int]) -> tuple[float, ...]:
    samples: dict[int, list[float]] = {k: [] for k in counts}
    for _ in range(ROUNDS):
        for k in [1] * (ONE_ROW_REPEATS - 1) + counts:
            started = time.perf_counter()
            _decode(ctx, batch, tokens[cached : cached + k], cached)
            samples[k].append(time.perf_counter() - started)
            ctx.seq_rm(0, cached, -1)
    return tuple(statistics.median(samples[k]) for k in counts)
