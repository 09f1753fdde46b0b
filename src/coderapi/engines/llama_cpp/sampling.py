"""Which sampler a sequence gets, and optional logprobs.

Every sampler picks the token llama.cpp's full chain (chain.py) would pick; the others only skip
work. Greedy requests skip the chain: `greedy.GreedyPicker` picks the same token with numpy,
without copying the vocabulary into a candidate array every step; with a grammar,
`grammar_greedy.GrammarGreedyPicker` asks the grammar about that token alone and masks the whole
vocabulary only when the grammar refuses it. Sampled requests with a grammar take
`grammar_sampled.GrammarSampledPicker`: the chain's own samplers over a shortlist the grammar
has filtered, wherever the shortlist provably holds what the chain would keep.

Logprobs are computed only when asked for, with numpy over the model's *raw* logits row, so
they describe the model's own distribution, before bias, penalties, grammar or temperature.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from coderapi.engines.base import SamplingParams, TopLogprob

from .chain import PENALTY_LAST_N, SamplerChain
from .grammar_greedy import GrammarGreedyPicker
from .grammar_sampled import GrammarSampledPicker
from .greedy import GreedyPicker
from .model import LlamaModel

__all__ = ["PENALTY_LAST_N", "SamplerChain", "Sampler", "make_sampler", "compute_logprobs", "LogprobResult"]


@dataclass(frozen=True)
class LogprobResult:
    logprob: float
    top: list[TopLogprob]


Sampler = SamplerChain | GreedyPicker | GrammarGreedyPicker | GrammarSampledPicker


def make_sampler(model: LlamaModel, params: SamplingParams, prompt: list[int]) -> Sampler:
    """The cheapest sampler that picks exactly what the full llama.cpp chain would."""
    if params.temperature <= 0.0 and params.grammar:
        return GrammarGreedyPicker(model.vocab, model.n_vocab, params, prompt, PENALTY_LAST_N)
    if params.temperature <= 0.0:
        return GreedyPicker(model.n_vocab, params, prompt, PENALTY_LAST_N)
    if params.grammar:
        return GrammarSampledPicker(model, params, prompt)
    return SamplerChain(model, params, prompt)


def compute_logprobs(
    logits_ptr, n_vocab: int, token_id: int, top_k: int, model: LlamaModel
) -> LogprobResult:
    """Log-softmax of the raw logits row: the chosen token's logprob and the top-k tokens."""
    if not logits_ptr:
        raise RuntimeError("llama.cpp returned no logits for this sequence")
    row = np.ctypeslib.as_array(ctypes.cast(logits_ptr, ctypes.POINTER(ctypes.c_float)), (n_vocab,))
    peak = float(row.max())
    log_z = peak + float(np.log(np.exp(row - peak, dtype=np.float32).sum(dtype=np.float64)))
    chosen = float(row[token_id]) - log_z
    top: list[TopLogprob] = []
    if top_k > 0:
        k = min(top_k, n_vocab)
        idx = np.argpartition(row, n_vocab - k)[n_vocab - k :]
        idx = idx[np.argsort(-row[idx], kind="stable")]
        top = [
            TopLogprob(
                token_id=int(i),
                text=model.token_text(int(i)),
                logprob=min(float(row[i]) - log_z, 0.0),
            )
            for i in idx
        ]
    return LogprobResult(logprob=min(chosen, 0.0), top=top)
