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
halves after one was cut short, between `MIN_DRAFT` and `max_draft`. Not below 2: on 2 cores a
step of 2 rows costs nearly twice one row, 3 or 4 rows little more than 2 (measured on the 0.5B).

Pure logic, no llama.cpp: tests/unit/test_drafting.py checks it on plain token lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    ) -> None:
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

    def observe(self, token: int) -> None:
        """One more output token, in order."""
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

    def propose(self, limit: int) -> list[int]:
        """Up to min(limit, the adaptive length) reference tokens expected next; [] if none."""
        if limit <= 0:
            return []
        if self.ptr is None:
            self.ptr = self._anchor()
            if self.ptr is None:
                return []
        end = min(self.ptr + min(limit, self.k), self.n)
        return [int(t) for t in self.ref[self.ptr : end]]

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
        if drafted and accepted == drafted:
            self.k = min(self.max_draft, self.k * 2)
        elif drafted:
            self.k = max(MIN_DRAFT, self.k // 2)


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

    def propose(self, limit: int, *, use_context: bool) -> list[int]:
        self._last = None
        for cursor in (self.prediction, self.context if use_context else None):
            if cursor is not None:
                draft = cursor.propose(limit)
                if draft:
                    self._last = cursor
                    return draft
        return []

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


def accepted_prefix(draft: list[int], sampled: list[int]) -> int:
    """How many draft tokens the target agreed with: sampled[i] is the target's token after i
    accepted drafts, so the draft holds while draft[i] == sampled[i]."""
    n = 0
    while n < len(draft) and n < len(sampled) and draft[n] == sampled[n]:
        n += 1
    return n
