"""When llama.cpp's pick stages keep the same tokens from a grammar-filtered shortlist as from
the whole vocabulary (grammar_sampled.py relies on it; pure numpy, no llama.cpp).

The shortlist holds every token at least as likely as the 256th (its logit: the threshold)
and every token bias or penalties change, so a token off the list has a logit below the
threshold. The pick stages (top-k -> top-p -> min-p -> temperature -> dist) keep the same tokens
in the same order when:

- top-k: at least k allowed tokens reach the threshold; the chain's k are then these k; or
- top-p: the cut falls after the same token whatever mass the others add to the softmax's sum
  (at most the places left in top-k, each weighing less than the threshold), checked in
  float64 with a margin that covers the chain's float32 sums; or
- min-p without top-p: the threshold is below min-p's floor, so the others are all dropped;
- and no two of the kept tokens (nor the next one) tie: a sort may order ties either way, and
  the order decides which token a given draw lands on.
"""

from __future__ import annotations

import math

import numpy as np

from coderapi.engines.base import SamplingParams

# Relative slack on top-p's cut: the chain sums at most TOP_P_MAX_K float32 terms (error below
# 1024 * 6e-8); a larger top-k (or none: a sum over the vocabulary) takes the full chain.
TOP_P_MARGIN = 1e-3
TOP_P_MAX_K = 1024
MIN_P_MARGIN = 1e-3  # in logits: covers logf and the float32 add in min-p's floor


def shortlist_suffices(desc: np.ndarray, threshold: float, params: SamplingParams) -> bool:
    """`desc`: the allowed shortlist's logits after bias and penalties, descending."""
    kept = kept_count(desc, threshold, params)
    if kept is None:
        return False
    head = desc[: kept + 1]
    return bool(np.all(head[:-1] > head[1:]))


def kept_count(desc: np.ndarray, threshold: float, params: SamplingParams) -> int | None:
    """How many tokens (at most) the pick stages keep, when that is provably the same with the
    tokens off the list; None when it may not be."""
    k, top_p, min_p = params.top_k, params.top_p, params.min_p
    sure = int(np.count_nonzero(desc >= threshold))  # no token off the list can pass these
    if sure == 0:
        return None
    if k > 0 and sure >= k:
        return k
    if top_p < 1.0:
        return top_p_kept(desc[:sure], threshold, k - sure, top_p) if 0 < k <= TOP_P_MAX_K else None
    if min_p > 0.0:
        floor = float(desc[0]) + math.log(min_p)
        return int(np.count_nonzero(desc >= floor)) if threshold < floor - MIN_P_MARGIN else None
    return None


def top_p_kept(sure: np.ndarray, threshold: float, others: int, top_p: float) -> int | None:
    """How many tokens top-p keeps when its cut is the same for every mass that `others` tokens,
    each below the threshold, could add to the softmax's sum; None when it is not."""
    p = float(np.float32(top_p))  # the chain compares against the float32 value
    top = float(sure[0])
    weights = np.cumsum(np.exp(sure.astype(np.float64) - top))
    alone = weights[-1]
    most = alone + others * math.exp(float(threshold) - top)
    first = int(np.searchsorted(weights, p * alone * (1 - TOP_P_MARGIN)))
    last = int(np.searchsorted(weights, p * most * (1 + TOP_P_MARGIN)))
    return first + 1 if first == last < weights.size else None
