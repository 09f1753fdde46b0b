"""Greedy decoding without a llama.cpp sampler chain: numpy argmax over the logits row.

`llama_sampler_sample` copies the whole vocabulary (152k candidates for Qwen2.5) into a
candidate array before any sampler runs, and the penalties sampler then looks every candidate
up in its token-count map: about 0.5 ms per token here, against 0.015 ms for an argmax over
the logits row in place. Greedy requests are most of what editors and agents send, so they
take this path unless they need a grammar (which only llama.cpp's sampler implements).

The result is the token llama.cpp's chain (logit bias -> penalties -> greedy) would pick: the
same float32 arithmetic on the few tokens bias and penalties touch, and the first maximum on
ties, as `llama_sampler_greedy_apply` does. tests/integration/test_greedy_picker.py checks the
two paths against each other on the real model.
"""

from __future__ import annotations

import ctypes
from collections import Counter, deque

import llama_cpp as lc
import numpy as np

from coderapi.engines.base import SamplingParams

_F32 = np.float32


def logits_row(ctx_ptr, batch_index: int, n_vocab: int) -> np.ndarray:
    """Batch row `batch_index`'s logits, in place (a view of llama.cpp's buffer, not a copy)."""
    logits_ptr = lc.llama_get_logits_ith(ctx_ptr, batch_index)
    if not logits_ptr:
        raise RuntimeError("llama.cpp returned no logits for this sequence")
    return np.ctypeslib.as_array(ctypes.cast(logits_ptr, ctypes.POINTER(ctypes.c_float)), (n_vocab,))


class GreedyPicker:
    """Same interface as `SamplerChain` (sample, free) for greedy requests without a grammar."""

    def __init__(self, n_vocab: int, params: SamplingParams, prompt: list[int], last_n: int) -> None:
        self.n_vocab = n_vocab
        # logit_bias as arrays, once: each step then costs O(entries + penalized tokens), never
        # a walk over the vocabulary or a Python loop over the bias.
        bias = {int(t): b for t, b in params.logit_bias.items() if 0 <= int(t) < n_vocab}
        self.bias_ids = np.fromiter(bias.keys(), dtype=np.int64, count=len(bias))
        self.bias_values = np.fromiter(bias.values(), dtype=_F32, count=len(bias))
        self.bias_index = {t: i for i, t in enumerate(bias)}  # token -> its row in the arrays
        self.repeat = _F32(params.repetition_penalty)
        self.freq = _F32(params.frequency_penalty)
        self.present = _F32(params.presence_penalty)
        self.penalize = last_n > 0 and (
            params.repetition_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        )
        # Bias and penalties that can only lower a logit leave the raw argmax the answer whenever
        # they do not touch it (the common case): then the row is scanned once and nothing else runs.
        self.only_lowers = (
            self.repeat >= 1 and self.freq >= 0 and self.present >= 0 and not (self.bias_values > 0).any()
        )
        self.window: deque[int] = deque(maxlen=max(last_n, 1))
        self.counts: Counter[int] = Counter()
        if self.penalize:
            for token in prompt[-last_n:]:
                self._accept(token)

    def sample(self, ctx_ptr, batch_index: int) -> int:
        token = self.pick(logits_row(ctx_ptr, batch_index, self.n_vocab))
        self.accept(token)
        return token

    def pick(self, row: np.ndarray) -> int:
        """The greedy token of this logits row after bias and penalties; the row is left as it was."""
        if self.only_lowers:
            # Every touched logit ends at or below its raw value (IEEE rounding cannot lift v/r,
            # v*r or v-c past v for r >= 1, c >= 0), and every token before the raw argmax is
            # strictly below it: an untouched argmax stays the first maximum.
            token = int(row.argmax())
            if token not in self.counts and token not in self.bias_index:
                return token
        ids, values = self._adjusted(row)
        if ids is None:
            return int(row.argmax())
        raw = row[ids]  # fancy indexing copies
        row[ids] = values
        token = int(row.argmax())
        row[ids] = raw  # the raw row stays intact for logprobs
        return token

    def adjusted_copy(self, row: np.ndarray) -> np.ndarray:
        """A copy of the row with bias and penalties applied (what the chain's greedy sees)."""
        out = row.copy()
        ids, values = self._adjusted(row)
        if ids is not None:
            out[ids] = values
        return out

    def touched_ids(self) -> np.ndarray:
        """The tokens whose logits bias or penalties change now (a token may appear twice)."""
        if not self.counts:
            return self.bias_ids
        return np.concatenate([self.bias_ids, np.fromiter(self.counts, dtype=np.int64, count=len(self.counts))])

    def accept(self, token: int) -> None:
        """The token was chosen: it enters the penalties' window."""
        if self.penalize:
            self._accept(token)

    def _adjusted(self, row: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The tokens bias or penalties change and their new logits, in the chain's order."""
        if not self.bias_ids.size and not self.counts:
            return None, None
        if not self.counts:
            return self.bias_ids, row[self.bias_ids] + self.bias_values
        if not self.bias_ids.size:  # penalties only: the window's tokens, each counted
            ids = np.fromiter(self.counts.keys(), dtype=np.int64, count=len(self.counts))
            counts = np.fromiter(self.counts.values(), dtype=_F32, count=len(self.counts))
            values = row[ids]
            penalized = np.where(values <= 0, values * self.repeat, values / self.repeat)
            penalized -= counts * self.freq + self.present
            return ids, penalized
        # The biased tokens, then the penalized ones without a bias (at most last_n of them).
        n_bias = self.bias_ids.size
        extra = [t for t in self.counts if t not in self.bias_index]
        at = {t: n_bias + i for i, t in enumerate(extra)}
        ids = np.concatenate([self.bias_ids, np.array(extra, dtype=np.int64)])
        values = row[ids]
        values[:n_bias] += self.bias_values
        counts = np.zeros(ids.size, dtype=_F32)
        for token, count in self.counts.items():
            counts[self.bias_index.get(token, at.get(token))] = count
        seen = counts > 0
        penalized = np.where(values <= 0, values * self.repeat, values / self.repeat)
        penalized -= counts * self.freq + self.present
        return ids, np.where(seen, penalized, values)

    def _accept(self, token: int) -> None:
        if len(self.window) == self.window.maxlen:
            old = self.window[0]
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        self.window.append(token)
        self.counts[token] += 1

    def free(self) -> None:
        """Nothing native to release; here so the worker treats every sampler alike."""
