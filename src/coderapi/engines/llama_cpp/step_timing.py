"""What a decode step costs by its rows on this machine, measured once at load (draft_value.py).

On sequence 0, with `LONG` tokens cached and then `SHORT` (fewer in a small context), each round
times a step of every row count in `ROW_COUNTS` (up to the most a step may verify), one after the
other, and the one-row step several times; the medians over the rounds are the costs. Sequence 0
may still hold the exactness probe's tokens (invariance.py; what they are does not matter here),
which saves evaluating the long context again. About 5 s on 2 cores for the 0.5B.
"""

from __future__ import annotations

import logging
import statistics
import time

import llama_cpp as lc

from .draft_value import StepCosts
from .invariance import PROBE_TEXT, _decode, probe_exact_rows
from .scheduler import MAX_DRAFT_ROWS, ExactRows

log = logging.getLogger("coderapi.engines.llama_cpp")

ROW_COUNTS = (1, 2, 3, 4, 8, 16, 32, 64)
LONG, SHORT = 1024, 128
ROUNDS = 3
ONE_ROW_REPEATS = 3  # per round: the cheapest step is the noisiest


def calibrate_speculation(model, ctx, batch, n_ctx_per_seq: int, n_batch: int, *, exact: bool,
                          timed: bool) -> tuple[ExactRows | None, StepCosts | None]:
    """At load, on the worker thread: the rows exact speculation may verify (when `exact`) and the step
    costs drafts are weighed with (when `timed`); the timing reuses the probe's cache."""
    exact_rows = costs = None
    if exact:
        exact_rows = probe_exact_rows(model, ctx, batch, n_ctx_per_seq, n_batch, keep_cache=timed)
        log.info("speculation: greedy and seeded drafts verified in steps of at most (tokens cached, rows) %s "
                 "(%d rows past the last)", exact_rows.checkpoints, exact_rows.beyond)
    if timed:
        costs = measure_step_costs(model, ctx, batch, min(MAX_DRAFT_ROWS + 1, n_batch), n_ctx_per_seq, n_batch)
        log.info("speculation: decode steps of %s rows take %s ms at %s tokens cached", costs.rows,
                 " and ".join(str([round(s * 1000, 1) for s in times]) for times in costs.seconds), costs.contexts)
    return exact_rows, costs


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
