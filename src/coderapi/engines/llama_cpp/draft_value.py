"""Whether a draft pays: a step's time by its rows, against the tokens a draft is expected to add.

A decode step's time depends on its rows, on how many tokens its sequences have cached, and on the
CPU and the kernels the weights take: on the 2-core EPYC VM of 2026-12-05 (bench/step_rows.py,
repacked, 300 tokens cached), 2 rows cost 2.41 one-row steps, 3 rows 2.97, 4 rows 3.23, 8 rows 4.19;
on the same VM two days before, 3 or 4 rows cost little more than 2. So the worker measures its steps
at load (step_timing.py: llama_decode alone, at two lengths of context) and, as it runs, what a step
costs beyond llama_decode (planning, sampling, handing events over: ~0.7 ms here), rather than
assuming either. A draft is verified only when the step's expected tokens per second rise with it:

    (tokens + expected) / time(rows + n)  >  tokens / time(rows)

`rows` and `tokens` are the step's decode rows planned so far (this sequence's own row included) and
the tokens they are expected to give (one per decoding sequence, plus the drafts' expected accepted
tokens); `expected` is what the draft's source expects of its first `n` tokens (`DraftOffer`, from the
source's recent drafts: drafting.py). Alone, with 3-row steps at ~2.9 one-row steps, a 2-token draft
pays only when nearly always right (an edit's prediction: about 1.04x measured in-process), never at
the hit rate of n-gram drafts on new code (57%: 0.89x llama-server's lone decoding when verified).

Pure: no llama.cpp, no clock. tests/unit/test_draft_value.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence


def _linear(xs: Sequence[int], ys: Sequence[float], x: float) -> float:
    """ys at x: linear between the points, the end segments' slopes beyond them (one point: y0)."""
    if len(xs) == 1:
        return ys[0]
    i = 1
    while i < len(xs) - 1 and x > xs[i]:
        i += 1
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass(frozen=True)
class StepCosts:
    """A step's seconds by its rows and the tokens its sequence has cached."""

    rows: tuple[int, ...]  # row counts measured, ascending, from 1
    contexts: tuple[int, ...]  # tokens cached at each measurement, ascending (one or two)
    seconds: tuple[tuple[float, ...], ...]  # llama_decode's seconds, [context][row count]
    overhead: float = 0.0  # the worker's seconds per step beyond llama_decode (measured as it runs)

    def at(self, rows: int, kv_len: int = 0) -> float:
        """A step's seconds: linear in the rows between those measured (proportional below one row's)
        and in the context between the lengths measured (on beyond the longest, where attention's
        share grows; the shortest's below it)."""
        by_context = [_linear(self.rows, times, rows) if rows >= self.rows[0] else times[0] * rows / self.rows[0]
                      for times in self.seconds]
        decode = _linear(self.contexts, by_context, max(kv_len, self.contexts[0]))
        return max(decode, min(by_context)) + self.overhead

    def after_step(self, rows: int, kv_len: int, seconds: float) -> StepCosts:
        """These costs with a decode-only step's whole time averaged into `overhead`: what it took beyond
        the load-time timing of its llama_decode (the worker's own work, and the event loops' on the same
        cores, which slow llama.cpp's threads once a step)."""
        beyond = max(0.0, seconds - (self.at(rows, kv_len) - self.overhead))
        return replace(self, overhead=self.overhead * 0.95 + beyond * 0.05)


@dataclass(frozen=True)
class DraftOffer:
    """The tokens a sequence's draft source would draft now, and what it expects of them."""

    tokens: Sequence[int]
    # Tokens the target is expected to accept of a draft of the first n; None: no estimate (draft them all).
    expected: Callable[[int], float] | None = None


def best_draft_length(offer: DraftOffer, limit: int, costs: StepCosts | None, rows: int, tokens: float,
                      kv_len: int = 0) -> tuple[int, float]:
    """(n, expected accepted): the offer cut to `limit` if it raises the step's tokens per second, for a
    sequence with `kv_len` tokens cached, else (0, 0.0). Without costs or an estimate, the offer cut to
    `limit`, as drafted. The length is the source's (drafting.py adapts it to its runs): weighing
    shorter cuts against the estimate measured slower on edits, whose runs outlast what the few
    recent outcomes can tell."""
    n = min(limit, len(offer.tokens))
    if n <= 0:
        return 0, 0.0
    if costs is None or offer.expected is None:
        return n, float(n)
    expected = offer.expected(n)
    if (tokens + expected) / costs.at(rows + n, kv_len) > tokens / costs.at(rows, kv_len):
        return n, expected
    return 0, 0.0
