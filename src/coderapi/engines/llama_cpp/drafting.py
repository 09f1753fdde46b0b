"""Draft tokens for speculative decoding: where the output is heading, read off a reference.

Two references feed drafts, both with one `DraftCursor`:

- a *prediction* (OpenAI's Predicted Outputs: the file being edited), fixed, expected to start
  where the output starts;
- the *context* itself, prompt then output so far, growing with every token (prompt-lookup or
  n-gram decoding: code repeats what it has just read).

A cursor follows the output through its reference: while each new output token equals the
reference token under the cursor, the cursor moves on and the next tokens of the reference are
the draft. After a mismatch (the edit itself) it re-anchors on the last few output tokens: the
longest suffix of the output, `max_match` tokens down to `min_match`, found in the reference,
at the first place at or after where alignment was lost (so the rest of the file is still
used, in order), else at the last place before it. The search runs in numpy over the reference.

How many tokens to draft adapts per cursor: it doubles after a draft was wholly accepted and
halves after one was cut short, between `MIN_DRAFT` and `max_draft`. Each cursor also keeps its
last outcomes (drafted, accepted) and from them estimates what a draft of n tokens would have
accepted (`expected_accepted`), which the scheduler weighs against the step's cost by rows
(draft_value.py). A draft the scheduler does not verify is *shadowed*: the cursor anchors where
it starts and checks it against the output tokens as they come, so the estimate keeps learning
(and the length keeps adapting) at no cost; shadowed outcomes count in no usage figure.

Pure logic, no llama.cpp: tests/unit/test_drafting.py checks it on plain token lists.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from coderapi.engines.base import SamplingParams
from .scheduler import MAX_DRAFT_ROWS


def match_ends(ref: np.ndarray, n: int, pattern: list[int]) -> np.ndarray:
    """Positions p (ascending) with ref[p-m:p] == pattern and p <= n-1: a token follows the match."""
    m = len(pattern)
    if m == 0 or n - m < 1:
        return np.empty(0, dtype=np.int64)
    span = n - m  # match starts s = 0 .. n-m-1
    mask = ref[0:span] == pattern[0]
    for i in range(1, m):
        if not mask.any():
            break
        mask &= ref[i : span + i] == pattern[i]
    return np.flatnonzero(mask) + m


def pick_anchor(ends: np.ndarray, floor: int) -> int | None:
    """The first match end at or after `floor`, else the last one before it."""
    if ends.size == 0:
        return None
    i = int(np.searchsorted(ends, floor))
    return int(ends[i]) if i < ends.size else int(ends[-1])


@dataclass
class DraftStats:
    accepted: int = 0
    rejected: int = 0


MIN_DRAFT = 2
# Context (n-gram) drafts: 32 beat 16 on bench/edits.py n-gram only, weight_repack off, in two side-by-side
# pairs (1.55x vs 1.45x, 1.40x vs 1.22x own plain); 64 gained nothing measurable (1.016x, bench/edits_ab.py)
# while n-gram drafts are rejected more often than a prediction's, each rejected row a step's work wasted.
NGRAM_MAX_DRAFT = 32
OUTCOMES_KEPT = 8  # recent drafts (verified or shadowed) behind the estimate: code changes course


class DraftCursor:
    """Follows the output through one reference and proposes the tokens that follow."""

    def __init__(
        self,
        reference: list[int],
        *,
        grows: bool,
        capacity: int = 0,
        min_match: int = 1,
        max_match: int = 4,
        max_draft: int = 16,
        first_draft: int = 4,
        aligned_at_start: bool = False,
        trusted: bool = False,
    ) -> None:
        """`trusted`: with no outcome yet, expect a draft to be accepted whole (a prediction, which the
        client says the output repeats); else expect nothing until a shadowed draft shows otherwise."""
        size = max(len(reference) + (capacity if grows else 0), 1)
        self.ref = np.zeros(size, dtype=np.int32)
        self.ref[: len(reference)] = reference
        self.n = len(reference)
        self.grows = grows
        self.min_match = min_match
        self.max_match = max_match
        self.max_draft = max_draft
        self.k = max(MIN_DRAFT, min(first_draft, max_draft))
        self.ptr: int | None = 0 if aligned_at_start else None  # next reference token expected
        self.floor = 0  # where alignment was last lost: re-anchoring prefers to move forward
        self.output: list[int] = []  # the output's last max_match tokens
        self.stats = DraftStats()
        self.trusted = trusted
        self.outcomes: deque[tuple[int, int]] = deque(maxlen=OUTCOMES_KEPT)  # (drafted, accepted)
        self._shadow: tuple[int, int] | None = None  # (start, length) of a draft followed, not verified

    def observe(self, token: int) -> None:
        """One more output token, in order."""
        if self._shadow is not None:
            self._follow_shadow(token)
        if self.ptr is not None:
            if self.ptr < self.n and int(self.ref[self.ptr]) == token:
                self.ptr += 1
            else:
                self.floor = self.ptr
                self.ptr = None
        if self.grows and self.n < self.ref.size:
            self.ref[self.n] = token
            self.n += 1
        self.output.append(token)
        if len(self.output) > self.max_match:
            del self.output[0]

    def peek(self, limit: int) -> tuple[int | None, list[int]]:
        """Where the draft starts in the reference and up to min(limit, the adaptive length)
        tokens from there; (None, []) if none. Changes nothing: `propose` keeps the anchor.

        The scheduler plans with peeks (scheduler.DraftSource) and the worker keeps the anchors
        of the drafts the plan used (`Drafter.take`). A shorter limit gives a prefix of a longer
        one's draft: the anchor does not depend on it."""
        if limit <= 0:
            return None, []
        ptr = self.ptr if self.ptr is not None else self._anchor()
        if ptr is None:
            return None, []
        end = min(ptr + min(limit, self.k), self.n)
        return ptr, [int(t) for t in self.ref[ptr:end]]

    def propose(self, limit: int) -> list[int]:
        """As `peek`, and the cursor stays anchored where the draft starts."""
        ptr, draft = self.peek(limit)
        if draft:  # an anchor found always has a token after it: no draft, no anchor
            self.ptr = ptr
        return draft

    def _anchor(self) -> int | None:
        history = self._history()
        for m in range(min(self.max_match, len(history)), self.min_match - 1, -1):
            found = pick_anchor(match_ends(self.ref, self._searchable(), history[-m:]), self.floor)
            if found is not None:
                return found
        return None

    def _history(self) -> list[int]:
        if self.grows:  # the context's own tail: the prompt's end counts before any output
            return [int(t) for t in self.ref[max(0, self.n - self.max_match) : self.n]]
        return self.output

    def _searchable(self) -> int:
        # A growing reference ends with the history itself: a match there has nothing after it,
        # and match_ends only returns matches followed by a token.
        return self.n

    def verified(self, drafted: int, accepted: int) -> None:
        """The outcome of verifying `drafted` tokens: adapt the draft length, count."""
        self.stats.accepted += accepted
        self.stats.rejected += drafted - accepted
        self._learn(drafted, accepted)

    def anchor(self, start: int) -> None:
        """A draft from `start` is verified this step (it supersedes a shadowed one)."""
        self.ptr = start
        self._shadow = None

    def shadow(self, start: int, length: int) -> None:
        """Follow the draft of `length` tokens from `start` without verifying it (one at a time)."""
        if self._shadow is None and length > 0:
            self.ptr = start
            self._shadow = (start, length)

    def _follow_shadow(self, token: int) -> None:
        start, length = self._shadow
        matched = self.ptr - start if self.ptr is not None else 0
        if self.ptr is not None and self.ptr < self.n and int(self.ref[self.ptr]) == token:
            if matched + 1 == length:
                self._shadow = None
                self._learn(length, length)
        else:
            self._shadow = None
            self._learn(length, matched)

    def _learn(self, drafted: int, accepted: int) -> None:
        if not drafted:
            return
        self.outcomes.append((drafted, accepted))
        if accepted == drafted:
            self.k = min(self.max_draft, self.k * 2)
        else:
            self.k = max(MIN_DRAFT, self.k // 2)

    def expected_accepted(self, n: int) -> float:
        """Tokens a draft of `n` would have accepted, over the recent outcomes: a run cut short
        counts what it reached (up to n); a draft accepted whole counts its length, then the rest
        of the n at the outcomes' per-token hit rate (accepted / (accepted + misses))."""
        if not self.outcomes:
            return float(n) if self.trusted else 0.0
        accepted = sum(a for _, a in self.outcomes)
        misses = sum(a < d for d, a in self.outcomes)
        rate = accepted / (accepted + max(misses, 1))  # never 1: a run ends somewhere
        total = 0.0
        for drafted, got in self.outcomes:
            if got < drafted or n <= drafted:
                total += min(got, n)
            else:  # at least `drafted` in a row, and on at the hit rate
                total += drafted + rate * (1 - rate ** (n - drafted)) / (1 - rate)
        return total / len(self.outcomes)


@dataclass(frozen=True)
class Proposal:
    """A draft a cursor could make now: `tokens` read from its reference at `start`."""

    cursor: DraftCursor
    start: int
    tokens: list[int]


class Drafter:
    """A sequence's draft sources: its prediction first, else the context (n-gram lookup)."""

    def __init__(self, prediction: DraftCursor | None, context: DraftCursor | None) -> None:
        self.prediction = prediction
        self.context = context
        self._last: DraftCursor | None = None  # the source of the draft being verified

    def observe(self, token: int) -> None:
        for cursor in (self.prediction, self.context):
            if cursor is not None:
                cursor.observe(token)

    def peek(self, limit: int, *, use_context: bool) -> Proposal | None:
        """The draft `propose` would make, without changing any cursor; None if none."""
        for cursor in (self.prediction, self.context if use_context else None):
            if cursor is not None:
                ptr, draft = cursor.peek(limit)
                if draft:
                    return Proposal(cursor, ptr, draft)
        return None

    def take(self, proposal: Proposal | None, n: int) -> list[int]:
        """Use the first `n` tokens of `proposal` as this step's draft (n <= 0: no draft, the
        proposal's cursor follows it as a shadow).

        Exactly what `propose(n)` would have done at the time of `peek`: the cursor that drafted
        is anchored where its draft starts and is the one `verified` will credit."""
        self._last = None
        if proposal is None:
            return []
        if n <= 0:  # not worth verifying now: followed, to learn whether it would have been
            proposal.cursor.shadow(proposal.start, len(proposal.tokens))
            return []
        proposal.cursor.anchor(proposal.start)
        self._last = proposal.cursor
        return proposal.tokens[:n]

    def propose(self, limit: int, *, use_context: bool) -> list[int]:
        return self.take(self.peek(limit, use_context=use_context), limit)

    def verified(self, drafted: int, accepted: int) -> None:
        if self._last is not None:
            self._last.verified(drafted, accepted)
            self._last = None

    @property
    def prediction_stats(self) -> DraftStats:
        return self.prediction.stats if self.prediction is not None else DraftStats()

    @property
    def context_stats(self) -> DraftStats:
        return self.context.stats if self.context is not None else DraftStats()


def drafter_for(prompt: list[int], params: SamplingParams, ngram: bool, n_ctx_per_seq: int) -> Drafter | None:
    """A new request's drafter: its prediction, if any, and (when `ngram`) its own context."""
    predicted = None
    if params.prediction_ids:
        predicted = DraftCursor(list(params.prediction_ids), grows=False, aligned_at_start=True, max_draft=MAX_DRAFT_ROWS,
                                first_draft=8, trusted=True)
    context = None
    if ngram:
        capacity = min(params.max_tokens, n_ctx_per_seq)
        context = DraftCursor(prompt, grows=True, capacity=capacity, min_match=3, max_match=8, max_draft=NGRAM_MAX_DRAFT,
                              first_draft=4)
    return Drafter(predicted, context) if predicted or context else None


def accepted_prefix(draft: list[int], sampled: list[int]) -> int:
    """How many draft tokens the target agreed with: sampled[i] is the target's token after i
    accepted drafts, so the draft holds while draft[i] == sampled[i]."""
    n = 0
    while n < len(draft) and n < len(sampled) and draft[n] == sampled[n]:
        n += 1
    return n
