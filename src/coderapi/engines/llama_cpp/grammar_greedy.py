"""Greedy decoding under a grammar: ask the grammar about the greedy token first.

llama.cpp's chain applies the grammar to every candidate of the vocabulary (152k for Qwen2.5)
before the greedy pick: about 25 ms a token for a tool call's grammar on this 2-core machine,
as long as the 0.5B's whole decode step. But the greedy token under a grammar is the greedy
token of the unconstrained row whenever the grammar allows that token (masking only removes
candidates; bias and penalties change each token's logit on its own, so the order of the
steps does not matter, and the first maximum stays the first). So the picker takes the
unconstrained greedy token (greedy.GreedyPicker: numpy, bias and penalties as the chain applies
them) and asks the grammar about that one candidate. When the grammar refuses it, the grammar
is applied to a shortlist, every token at least as likely as the 256th (what it refuses is
mostly one spelling, a space or a line break, whose allowed twin is on the list), and to the
whole vocabulary only when nothing on the shortlist is allowed. The token is always the one
the full chain picks (tests/integration/test_greedy_picker.py checks both on the real model);
llama.cpp's own common_sampler checks the sampled token first in the same way.

Only greedy requests take this path: with sampling, drawing from the unconstrained distribution
first would change what top-k/top-p keep, so sampled requests keep the full chain.
"""

from __future__ import annotations

import ctypes

import llama_cpp as lc
import numpy as np

from coderapi.engines.base import SamplingParams

from .candidates import TOKEN_DATA, apply, candidates_of, grammar_sampler, shortlist, token_data_array
from .greedy import GreedyPicker, logits_row


class GrammarGreedyPicker:
    """Same interface as `SamplerChain` (sample, free) for greedy requests with a grammar."""

    def __init__(self, vocab, n_vocab: int, params: SamplingParams, prompt: list[int], last_n: int) -> None:
        self.n_vocab = n_vocab
        self.greedy = GreedyPicker(n_vocab, params, prompt, last_n)
        self.grammar = grammar_sampler(vocab, params.grammar)
        self._one = np.zeros(1, dtype=TOKEN_DATA)  # the greedy token, checked alone every step
        self._one_array = token_data_array(self._one)
        self._all: np.ndarray | None = None  # the whole vocabulary's candidates, made when first needed
        self.refusals = 0  # greedy tokens the grammar refused (tests and benchmarks read these two)
        self.full_applies = 0  # ... of which none on the shortlist was allowed: the whole vocabulary masked

    def sample(self, ctx_ptr, batch_index: int) -> int:
        row = logits_row(ctx_ptr, batch_index, self.n_vocab)
        token = self.greedy.pick(row)
        if not self._allows(token):
            self.refusals += 1
            token = self._constrained_pick(row)
        lc.llama_sampler_accept(self.grammar, token)
        self.greedy.accept(token)
        return token

    def _allows(self, token: int) -> bool:
        self._one[0] = (token, 0.0, 0.0)
        lc.llama_sampler_apply(self.grammar, ctypes.byref(self._one_array))
        return bool(np.isfinite(self._one["logit"][0]))

    def _constrained_pick(self, row: np.ndarray) -> int:
        adjusted = self.greedy.adjusted_copy(row)
        ids, _ = shortlist(adjusted)
        if ids.size < adjusted.size:
            # The best allowed token on the shortlist (first maximum; ids ascend) is the best allowed
            # overall: every token off the list is less likely than all on it.
            candidates = candidates_of(ids, adjusted[ids])
            apply(self.grammar, candidates)
            if np.isfinite(candidates["logit"]).any():
                return int(candidates["id"][int(candidates["logit"].argmax())])
        self.full_applies += 1
        if self._all is None:
            self._all = np.zeros(adjusted.size, dtype=TOKEN_DATA)
            self._all["id"] = np.arange(adjusted.size, dtype=np.int32)  # the grammar only masks logits: ids stay
        candidates = self._all
        candidates["logit"] = adjusted
        apply(self.grammar, candidates)
        return int(candidates["id"][int(candidates["logit"].argmax())])  # the first maximum, as greedy takes

    def free(self) -> None:
        if self.grammar:
            lc.llama_sampler_free(self.grammar)
            self.grammar = None
