"""Sampling under a grammar: llama.cpp's own samplers over a shortlist the grammar has filtered.

The full chain (chain.py) masks all 152k candidates with the grammar before every draw, about
25 ms a token on this 2-core machine, as long as the 0.5B's decode step. Yet what top-k, top-p
and min-p keep is a handful of the most likely tokens. So the picker asks the grammar about a
shortlist only (every token at least as likely as the 256th, plus every token that logit bias
or the penalties change), runs the chain's own bias and penalties samplers on what it allows,
and hands that to the chain's own pick samplers (top-k, top-p, min-p, temperature, dist with the
request's seed), when the shortlist provably leaves them the same tokens in the same order as
the whole vocabulary would (shortlist_bound.py says when). Otherwise the picker masks the whole
vocabulary and runs the stages as the chain does. Either way the dist sampler draws once per
token, so a seed gives the tokens the full chain gives (tests/integration/test_greedy_picker.py
checks it on the real model).
"""

from __future__ import annotations

import ctypes

import llama_cpp as lc
import numpy as np

from coderapi.engines.base import SamplingParams

from .candidates import TOKEN_DATA, apply, candidates_of, grammar_sampler, shortlist, token_data_array
from .chain import ADJUST, PENALTY_LAST_N, PICK, SamplerChain
from .greedy import GreedyPicker, logits_row
from .model import LlamaModel
from .shortlist_bound import shortlist_suffices


class GrammarSampledPicker:
    """Same interface as `SamplerChain` (sample, free) for sampled requests with a grammar."""

    def __init__(self, model: LlamaModel, params: SamplingParams, prompt: list[int]) -> None:
        self.n_vocab = model.n_vocab
        self.params = params
        self.grammar = self.adjust = self.pick = None
        try:
            self.grammar = grammar_sampler(model.vocab, params.grammar)
            self.adjust = SamplerChain(model, params, prompt, stages=(ADJUST,))
            self.pick = SamplerChain(model, params, prompt, stages=(PICK,))
        except BaseException:
            self.free()
            raise
        # Which tokens bias and penalties change (its window mirrors the penalties sampler's).
        self.touched = GreedyPicker(model.n_vocab, params, prompt, PENALTY_LAST_N)
        self._all: np.ndarray | None = None  # the whole vocabulary's candidates, made when first needed
        self.shortlist_picks = 0  # tests and benchmarks read these two
        self.full_picks = 0

    def sample(self, ctx_ptr, batch_index: int) -> int:
        row = logits_row(ctx_ptr, batch_index, self.n_vocab)
        token = self._shortlist_pick(row)
        if token is None:
            self.full_picks += 1
            token = self._full_pick(row)
        else:
            self.shortlist_picks += 1
        for sampler in (self.grammar, self.adjust.ptr, self.pick.ptr):
            lc.llama_sampler_accept(sampler, token)
        self.touched.accept(token)
        return token

    def _shortlist_pick(self, row: np.ndarray) -> int | None:
        ids, threshold = shortlist(row)
        if ids.size == row.size:
            return None
        touched = self.touched.touched_ids()
        if touched.size:
            ids = np.union1d(ids, touched)  # ascending, as in the whole vocabulary
        candidates = candidates_of(ids, row[ids])
        apply(self.grammar, candidates)
        allowed = candidates[np.isfinite(candidates["logit"])]
        if not allowed.size:
            return None
        apply(self.adjust.ptr, allowed)  # llama.cpp's own bias and penalty arithmetic, bit for bit
        if not shortlist_suffices(-np.sort(-allowed["logit"]), threshold, self.params):
            return None
        picked = apply(self.pick.ptr, allowed)
        return int(allowed["id"][picked.selected])

    def _full_pick(self, row: np.ndarray) -> int:
        if self._all is None:
            self._all = np.zeros(row.size, dtype=TOKEN_DATA)
        candidates = self._all
        candidates["id"] = np.arange(row.size, dtype=np.int32)  # top-k reorders them: set every time
        candidates["logit"] = row
        array = token_data_array(candidates)
        for sampler in (self.grammar, self.adjust.ptr, self.pick.ptr):
            lc.llama_sampler_apply(sampler, ctypes.byref(array))
        return int(candidates["id"][array.selected])

    def free(self) -> None:
        if self.grammar:
            lc.llama_sampler_free(self.grammar)
            self.grammar = None
        for chain in (self.adjust, self.pick):
            if chain is not None:
                chain.free()
