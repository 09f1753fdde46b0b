"""How many rows one llama_decode may hold and still give each row bit-identical logits.

llama.cpp's CPU kernels are not batch-invariant: repacked quantized matmuls take another path
from 4 rows on, flash attention a tiled one from 8 (measured on the 0.5B here: logits move by
0.2-0.4, enough to flip a greedy pick where two tokens nearly tie, and the keys and values
written move as much). Speculative verification feeds a sequence's next token and its draft
as several rows; for greedy and seeded requests to stay identical to plain decoding, their
verification steps keep to the rows this probe finds identical to a one-row decode.

The probe runs once, on the worker thread at load, on sequence 0 before any request: a short
prompt, its last 8 tokens decoded one per step (the reference), then again as 2, 3, ... rows in
one step until some row's logits differ (under a second).
"""

from __future__ import annotations

import ctypes

import llama_cpp as lc
import numpy as np

PROBE_TEXT = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n" * 12


def probe_invariant_rows(model, ctx, batch, max_rows: int) -> int:
    """The largest k <= max_rows such that a step of k rows gives every row the logits it gets alone."""
    tokens = model.tokenize(PROBE_TEXT, add_special=False)
    prefix, rows = tokens[: -max_rows], tokens[-max_rows:]
    start = len(prefix)
    try:
        _decode(ctx, batch, prefix, 0)
        reference = []
        for i, token in enumerate(rows):  # one row per step: the plain decoding path
            _decode(ctx, batch, [token], start + i)
            reference.append(_row(ctx, model.n_vocab, 0))
        invariant = 1
        for k in range(2, len(rows) + 1):
            ctx.seq_rm(0, start, -1)
            _decode(ctx, batch, rows[:k], start)
            if not all(np.array_equal(_row(ctx, model.n_vocab, i), reference[i]) for i in range(k)):
                break
            invariant = k
        return invariant
    finally:
        ctx.seq_rm(0, -1, -1)


def _decode(ctx, batch, tokens: list[int], pos: int) -> None:
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = pos + i
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(tokens)
    if lc.llama_decode(ctx.ptr, batch) != 0:
        raise RuntimeError("llama_decode failed while probing batch invariance")


def _row(ctx, n_vocab: int, index: int) -> np.ndarray:
    ptr = lc.llama_get_logits_ith(ctx.ptr, index)
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), (n_vocab,)).copy()
