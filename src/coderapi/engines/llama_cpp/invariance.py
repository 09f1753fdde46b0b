"""How many rows one llama_decode may hold and still give each row bit-identical logits.

llama.cpp's CPU kernels are not batch-invariant: repacked quantized matmuls take another path
from 4 rows on, unrepacked K-quant ones from 8 (ggml's tiled K-quant matmul; flash attention's
tiled kernel starts only at 64 query rows in this llama.cpp), and upstream flash attention also
splits a one-row step's KV cache across threads from 512 cells (padded by 256: from 257 tokens),
summing in another order than a multi-row step. coderapi's llama-cpp-python build turns that split
off (scripts/llama-patches/flash-attn-one-path.patch) and, on CPUs with AVX-512, computes every
step's attention with each query's arithmetic independent of the others in the step
(flash-attn-query-groups.patch), and a model served with weight_repack off
and exact speculation turns the tiled K-quant matmul off (GGML_CPU_TILED_MM=0, read by ggml once
per process; its other matmuls here, llamafile's tinyBLAS for Q5_0/Q8_0, match the one-row path at
every row count). Measured on the 0.5B here: 3 rows identical to one-row steps at every checkpoint
from 64 to 2048 tokens cached (repacked); weight_repack off, 65 (every k probed) from 64 to 1024,
7 with the tiled kernel on; without the patch, 3 (or 7) up to 128 tokens and 1 from 256. A one-row
difference moves logits by 0.2-0.4, enough to flip a greedy pick where two tokens nearly tie.
Speculative verification feeds a sequence's next token and its draft as several rows; for
greedy and seeded requests to stay identical to plain decoding, their verification steps keep
to the rows this probe finds identical to one-row steps at that length of context.

The probe runs once, on the worker thread at load, on sequence 0 before any request. At each
checkpoint length (64, 128, 256, ... up to the sequence's context, at most 1024), with that
many tokens cached: up to `max_rows` tokens decoded one per step (the reference), then again as
k rows in one step for each k of `probed_row_counts` until some row's logits differ; a later
checkpoint tries no more rows than the one before found (a step keeps to the fewest found up to
its length). It stops at the first checkpoint where only 1 row holds: from there on verification
is one row, i.e. no drafts. Past the last checkpoint (1024, which bounds the start-up cost, or the
context), the fewest rows found hold where the probe reached 512 tokens with more than one row at
every checkpoint: nothing in the CPU backend changes kernel with the cache's length past the split
the patch removes (an unpatched build shows 1 row by 256, so gets 1 beyond).
"""

from __future__ import annotations

import ctypes
import os

import llama_cpp as lc
import numpy as np

from .scheduler import MAX_DRAFT_ROWS, ExactRows

PROBE_TEXT = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n" * 12
FIRST_CHECKPOINT = 64
LAST_CHECKPOINT = 1024  # bounds the start-up cost; past it, see the module's docstring
SPLIT_KV_CELLS = 512  # where upstream's one-row flash attention changes path (see the patch)


TILED_MATMUL_SWITCH = "GGML_CPU_TILED_MM"  # read by ggml once, at the process's first matmul


def keep_unrepacked_matmuls_on_one_path() -> None:
    """Turn ggml's tiled K-quant matmul off (unless the environment already decides), so that
    unrepacked K-quant matmuls take the one-row path at every row count. Process-wide and only
    effective before the first matmul: the probe measures what it got either way."""
    os.environ.setdefault(TILED_MATMUL_SWITCH, "0")


def probe_exact_rows(model, ctx, batch, n_ctx_per_seq: int, n_batch: int, *, keep_cache: bool = False) -> ExactRows:
    """Invariant rows at checkpoint lengths up to the context, stopping where only 1 holds; at most
    the rows a step may verify (a token and MAX_DRAFT_ROWS drafts) or `n_batch`. `keep_cache`: sequence 0
    keeps the tokens evaluated up to the last checkpoint (for step_timing.py), else it is left empty."""
    max_rows = min(MAX_DRAFT_ROWS + 1, n_batch)
    lengths = []
    length = FIRST_CHECKPOINT
    while length <= LAST_CHECKPOINT and length + max_rows < n_ctx_per_seq:
        lengths.append(length)
        length *= 2
    if not lengths:
        return ExactRows(())
    text_tokens = model.tokenize(PROBE_TEXT, add_special=False)
    needed = lengths[-1] + max_rows
    tokens = (text_tokens * (needed // len(text_tokens) + 1))[:needed]
    checkpoints: list[tuple[int, int]] = []
    done, limit = 0, max_rows
    try:
        for length in lengths:
            for start in range(done, length, n_batch):  # the cache up to this checkpoint, chunked
                _decode(ctx, batch, tokens[start : min(length, start + n_batch)], start, logits=False)
            done = length
            # a step's rows are the fewest found up to its length: no need to try more than that
            rows = _invariant_rows(model, ctx, batch, tokens[length : length + limit], length)
            checkpoints.append((length, rows))
            if rows == 1:
                break
            limit = rows
        found = tuple(checkpoints)
        past_the_switch = found[-1][0] >= SPLIT_KV_CELLS  # a fall to 1 row before it stopped the probe
        return ExactRows(found, beyond=min(r for _, r in found) if past_the_switch else 1)
    finally:
        if not keep_cache:
            ctx.seq_rm(0, -1, -1)


def probed_row_counts(max_rows: int) -> list[int]:
    """The k tried: every k to 9 (the kernels here change path at 4 and 8 rows), then around each
    power of two and at `max_rows`, which bounds the start-up cost of probing up to 65 rows."""
    dense = list(range(2, min(max_rows, 9) + 1))
    sparse = {k for p in (16, 32, 64) for k in (p - 4, p, p + 1)} | {max_rows}
    return dense + sorted(k for k in sparse if 9 < k <= max_rows)


def _invariant_rows(model, ctx, batch, rows: list[int], start: int) -> int:
    """With `start` tokens cached on sequence 0: the largest probed k whose k-row step (and that
    of every smaller probed k) matches one-row steps row for row. Leaves the cache at `start`."""
    reference = []
    for i, token in enumerate(rows):  # one row per step: the plain decoding path
        _decode(ctx, batch, [token], start + i)
        reference.append(_row(ctx, model.n_vocab, 0))
    invariant = 1
    for k in probed_row_counts(len(rows)):
        ctx.seq_rm(0, start, -1)
        _decode(ctx, batch, rows[:k], start)
        if not all(np.array_equal(_row(ctx, model.n_vocab, i), reference[i]) for i in range(k)):
            break
        invariant = k
    ctx.seq_rm(0, start, -1)
    return invariant


def _decode(ctx, batch, tokens: list[int], pos: int, *, logits: bool = True) -> None:
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = pos + i
        batch.seq_id[i][0] = 0
        batch.logits[i] = int(logits)
    batch.n_tokens = len(tokens)
    if lc.llama_decode(ctx.ptr, batch) != 0:
        raise RuntimeError("llama_decode failed while probing batch invariance")


def _row(ctx, n_vocab: int, index: int) -> np.ndarray:
    ptr = lc.llama_get_logits_ith(ctx.ptr, index)
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (n_vocab,)).copy()
