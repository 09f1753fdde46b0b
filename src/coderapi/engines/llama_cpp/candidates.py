"""llama.cpp candidate arrays over numpy memory, and the grammar sampler both grammar pickers share.

A `llama_token_data_array` is a pointer and a size: numpy owns the memory, llama.cpp's samplers
(grammar, bias, penalties, top-k ...) work on it in place, so a picker can hand them a few
hundred candidates instead of the whole vocabulary.
"""

from __future__ import annotations

import ctypes

import llama_cpp as lc
import numpy as np

from coderapi.errors import InvalidRequest

# llama_token_data as numpy sees it: {int32 id; float logit; float p}, 12 bytes, no padding.
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
SHORTLIST = 256  # the pickers ask the grammar about the tokens at least as likely as the 256th first
assert TOKEN_DATA.itemsize == ctypes.sizeof(lc.llama_token_data)


def grammar_sampler(vocab, grammar: str):
    """llama.cpp's grammar sampler for `grammar` (GBNF, rule "root"); the caller frees it."""
    sampler = lc.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise InvalidRequest("The grammar could not be parsed (GBNF).", param="grammar")
    return sampler


def token_data_array(candidates: np.ndarray):
    """A llama_token_data_array over `candidates` (TOKEN_DATA); keep `candidates` alive while it is used."""
    data = candidates.ctypes.data_as(ctypes.POINTER(lc.llama_token_data))
    return lc.llama_token_data_array(data=data, size=len(candidates), selected=-1, sorted=False)


def candidates_of(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """A candidate array for token `ids` (in that order) with their `logits`."""
    out = np.zeros(ids.size, dtype=TOKEN_DATA)
    out["id"], out["logit"] = ids, logits
    return out


def apply(sampler, candidates: np.ndarray):
    """Run `sampler` (one sampler or a chain) over `candidates` in place; returns the array it saw
    (its `size` and `selected` say what a truncating or selecting sampler did)."""
    array = token_data_array(candidates)
    lc.llama_sampler_apply(sampler, ctypes.byref(array))
    return array


def shortlist(logits: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """The ids (ascending) of every token at least as likely as the SHORTLIST-th, and that logit."""
    n = logits.size
    if n <= SHORTLIST:
        return np.arange(n), np.float32(-np.inf)
    threshold = np.partition(logits, n - SHORTLIST)[n - SHORTLIST]
    return np.flatnonzero(logits >= threshold), threshold
