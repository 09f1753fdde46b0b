"""The plan of one decode step (continuous batching): pure functions of snapshots.

Nothing here touches llama.cpp, a thread or a live sequence: the worker (worker.py) snapshots
its waiting queue and running sequences (`SeqView`), asks `plan_admission` which requests to
drop, free and admit (owners in turn), and `plan_step` which rows the step holds (a `StepPlan`); the worker then
runs it. Drafts come from a `DraftSource` the worker passes in, a read-only query of the
sequences' draft cursors (`Drafter.peek`, drafting.py) that `plan_step` asks only when a
sequence may draft at all, with the exact number of rows it may have; the worker moves the
cursors afterwards, for the drafts the plan used (`Drafter.take`). The same inputs always give
the same plan, and no input is changed.

Each step feeds one token for every decoding sequence, then spends what is left of `n_batch`
(at most `prompt_rows_while_decoding` while any sequence decodes) on chunks of prompts still being
evaluated (chunked prefill), split evenly between owners and oldest admission first within each. A
long prompt therefore delays the running streams by at most one such chunk per step, and one owner's
long prompts hold back another's by half the rows at most. Every decoding stream waits for the whole
step, and a step costs about its rows (here 128 prompt rows per row cost what 512 do, plus a little
per step: bench/step_rows.py, bench/step_budget.py), so the cap trades a little prompt throughput
for shorter gaps in the streams.

Reproducible requests (greedy, or sampled with a seed) evaluate their last prompt token in a
step of its own when they are the only running sequence. llama.cpp's CPU kernels are not
batch-invariant (flash attention switches to a tiled kernel at 64 query rows, quantized
matmuls, repacked or not, use different kernels for different row counts), so the first token's logits
would otherwise depend on whether the prompt came from the prefix cache (last token evaluated
alone) or was evaluated cold (last token inside the whole prompt's batch). Splitting makes both
paths identical for a request served alone, at the cost of one short step. Beside other
sequences the batch's rows differ from run to run anyway, so the split would buy nothing and
cost a whole batched step of time to first token.

Speculative decoding: a decoding sequence with a draft (drafting.py) feeds its next token and
the draft in the same step, each row with logits, and the worker verifies them. Draft rows are
paid from a per-step budget that shrinks as more sequences decode (`draft_budget`): alone, a
draft row costs a fraction of a step and an accepted one saves a whole step; in a full batch
the step is compute-bound and a row costs nearly what it may save. Context (n-gram) drafts,
less often right than a prediction, are only made while at most `NGRAM_MAX_DECODING`
sequences decode. Within the budget, a draft is verified only where the step's measured cost by
rows and the draft source's recent hit rate say it raises the tokens per unit of time
(draft_value.py); a draft not verified is still followed by its source, to learn its hit rate.

Reproducible requests (greedy, or seeded) get the same answer with drafts as without: when the
worker knows how many rows a step may hold with every row's logits bit-identical to a one-row
step at the length of context the step runs at (`ExactRows`, probed by invariance.py), their
drafts keep the step's decode rows within it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Sequence

from .draft_value import DraftOffer, StepCosts, best_draft_length

# Draft rows per step when one sequence decodes (alone it keeps 63: _whole_row_groups). 64 rather than
# 32: a 64-row step costs 17.7 one-row steps against 10.0 for 32 rows (bench/step_rows.py, 2,000 tokens
# cached, weight_repack off), and `prediction` on bench/edits_ab.py went 1.081x faster.
MAX_DRAFT_ROWS = 64
SHARED_DRAFT_ROWS = 32  # draft rows of one step, all sequences together, when several decode
MATMUL_ROW_GROUP = 4  # batch rows llama.cpp's CPU matmuls take at a time (see _whole_row_groups)
DRAFT_ROWS_LOST_PER_SEQUENCE = 4  # ... and fewer for every other decoding sequence
NGRAM_MAX_DECODING = 2


@dataclass(frozen=True)
class SeqView:
    """What the scheduler knows of one running sequence, taken at the start of a step."""

    key: int  # unique among the running sequences (its slot's llama.cpp sequence id)
    prompt_len: int  # tokens to evaluate before it samples: its prompt (or, set aside once, its context)
    n_prompt_done: int  # of those, already in the KV cache
    kv_len: int  # tokens the sequence's KV stream holds: the next one goes at this position
    next_token: int | None  # sampled and not yet fed: the sequence decodes
    n_generated: int
    max_tokens: int
    reproducible: bool = False  # greedy or seeded: split the last prompt token, exact drafts
    drafts: bool = False  # it has a drafter
    owner: Hashable | None = None  # whose request it runs (SamplingParams.owner)
    cancelled: bool = False

    @property
    def decoding(self) -> bool:
        return self.next_token is not None

    @property
    def prefilling(self) -> bool:
        return self.n_prompt_done < self.prompt_len

    @property
    def evaluating_prompt(self) -> bool:
        """Its prompt still has rows to evaluate (and it has no token to decode yet)."""
        return not self.decoding and self.prefilling


@dataclass(frozen=True)
class WaitingView:
    id: int
    cancelled: bool
    owner: Hashable | None = None  # whose request it is (SamplingParams.owner)


@dataclass(frozen=True)
class Admission:
    """What happens to the queues before a step (request ids)."""

    release: tuple[int, ...]  # running keys whose requests were cancelled: free their slots
    drop: tuple[int, ...]  # waiting requests cancelled before they got a slot
    admit: tuple[int, ...]  # waiting requests that get a slot now, in the order they get it


def plan_admission(
    waiting: Sequence[WaitingView], cancelled_running: Sequence[int], n_free: int,
    running_owners: Sequence[Hashable | None] = (),
) -> Admission:
    """Drop the cancelled, free the slots of cancelled running ones, and give the free slots to
    waiting requests with owners in turn: each slot goes to the oldest request of the waiting owner
    with the fewest sequences running (`running_owners`: the owners of those that keep running),
    so one user's queue of requests holds back another's by one slot's turn, not by all of it.
    With one owner (or none) this is first come, first served."""
    live = [w for w in waiting if not w.cancelled]
    running = Counter(running_owners)
    queues: dict[Hashable | None, deque[int]] = {}
    for w in live:  # in queue order, so each owner's queue and the owners' first places are ordered
        queues.setdefault(w.owner, deque()).append(w.id)
    order = {w.id: i for i, w in enumerate(live)}
    admit: list[int] = []
    for _ in range(min(len(live), max(0, n_free + len(cancelled_running)))):
        owner = min(queues, key=lambda o: (running[o], order[queues[o][0]]))
        admit.append(queues[owner].popleft())
        running[owner] += 1
        if not queues[owner]:
            del queues[owner]
    return Admission(
        release=tuple(cancelled_running),
        drop=tuple(w.id for w in waiting if w.cancelled),
        admit=tuple(admit),
    )


def plan_preemption(running: Sequence[SeqView], waiting: Sequence[WaitingView], n_free: int) -> tuple[int, ...]:
    """Running sequences to set aside (their keys) so that waiting owners get their turn now.

    Admission alone would make a user wait until one of the sequences ahead ends, which one user's
    long generations (or long prompts) can put off for many minutes. So while no slot is free and a
    waiting owner runs at least two fewer sequences than the owner running the most, that owner gives
    up one sequence, the one with the least in its KV (the cheapest to evaluate again: often a prompt
    not yet begun): it waits, with its sampler and output so far, until admission gives it a slot
    back. The gap of two means no owner is ever set back below another's count, so nothing moves to
    and fro; with one owner nothing is set aside."""
    live = [w for w in waiting if not w.cancelled]
    staying = [v for v in running if not v.cancelled]
    if not live or n_free > 0 or len(staying) < len(running):  # a slot is free, or frees this step
        return ()
    counts = Counter(v.owner for v in staying)
    first_place: dict[Hashable | None, int] = {}
    for i, w in enumerate(live):
        first_place.setdefault(w.owner, i)
    waiting_left = Counter(w.owner for w in live)
    candidates: dict[Hashable | None, list[SeqView]] = {}
    for v in sorted(staying, key=lambda v: v.kv_len):
        candidates.setdefault(v.owner, []).append(v)
    preempted: list[int] = []
    while candidates and waiting_left:
        taker = min(waiting_left, key=lambda o: (counts[o], first_place[o]))
        giver = max(candidates, key=lambda o: (counts[o], -first_place.get(o, -1)))
        if counts[giver] - counts[taker] < 2:
            break
        preempted.append(candidates[giver].pop(0).key)
        if not candidates[giver]:
            del candidates[giver]
        counts[giver] -= 1
        counts[taker] += 1
        waiting_left[taker] -= 1
        if not waiting_left[taker]:
            del waiting_left[taker]
    return tuple(preempted)


DraftSource = Callable[[int, int, bool], DraftOffer]
"""(key, limit, use_context) -> the draft that sequence would make now, up to `limit` tokens (context
n-gram drafts only when `use_context`), and what its source expects of it. A query: asking must
change nothing."""


@dataclass(frozen=True)
class DecodePart:
    """A decoding sequence's rows: its next token at `start_pos`, then its draft, all with logits."""

    key: int
    start_pos: int
    token: int
    draft: tuple[int, ...] = ()

    @property
    def n_rows(self) -> int:
        return 1 + len(self.draft)


@dataclass(frozen=True)
class PrefillChunk:
    """Prompt tokens [start, stop) of a sequence, fed at start_pos, start_pos+1, ..."""

    key: int
    start_pos: int
    start: int
    stop: int
    wants_logits: bool  # the chunk ends the prompt: its last row's logits give the first token

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class StepPlan:
    decode: tuple[DecodePart, ...]  # in running order
    prefill: tuple[PrefillChunk, ...]  # in admission order

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.decode) + sum(c.n_rows for c in self.prefill)


@dataclass(frozen=True)
class ExactRows:
    """Rows a step may hold, identical to one-row steps, by the KV length it runs at (pure)."""

    checkpoints: tuple[tuple[int, int], ...]  # (tokens cached, invariant rows), lengths ascending
    beyond: int = 1  # rows past the last checkpoint (see invariance.probe_exact_rows)

    def at(self, kv_len: int) -> int:
        """The rows for a step whose sequence holds up to `kv_len` tokens: the fewest found at
        every checkpoint up to the first one at or past `kv_len` (`beyond` past the last probed)."""
        rows = None
        for length, found in self.checkpoints:
            rows = found if rows is None else min(rows, found)
            if length >= kv_len:
                return rows
        return self.beyond


def draft_budget(n_decoding: int) -> int:
    """Draft rows one step may verify, all sequences together, when `n_decoding` sequences decode:
    the most alone; beside others a budget that shrinks with every other decoding sequence."""
    if n_decoding <= 1:
        return MAX_DRAFT_ROWS
    return max(0, SHARED_DRAFT_ROWS - DRAFT_ROWS_LOST_PER_SEQUENCE * (n_decoding - 1))


def _draft_limit(seq: SeqView, n_ctx_per_seq: int) -> int:
    """Draft tokens this sequence may still verify: every one could become an output token."""
    room_tokens = seq.max_tokens - seq.n_generated - 1
    room_ctx = n_ctx_per_seq - seq.kv_len - 2  # the next token and at least one more
    return min(room_tokens, room_ctx)


def plan_step(
    running: Sequence[SeqView],
    n_batch: int,
    n_ctx_per_seq: int = 1 << 30,
    exact_rows: ExactRows | None = None,
    drafts: DraftSource | None = None,
    row_group: int = 1,
    prompt_rows_while_decoding: int | None = None,
    costs: StepCosts | None = None,
) -> StepPlan:
    """Decode rows first (one per decoding sequence, plus drafts), then prompt chunks shared between owners.

    Each decoding sequence with a drafter, in turn, may draft as many rows as the step can still
    spare (`drafts` is asked only when that is at least one); with `costs`, only as many of them as
    raise the step's expected tokens per cost most, if any (draft_value.py). The plan never holds more than
    `n_batch` rows, and while any sequence decodes, at most `prompt_rows_while_decoding` of them are
    prompt rows (each decoding stream waits for the whole step). A step of decode rows only keeps to
    whole groups of `row_group` rows where its drafts allow (the worker passes MATMUL_ROW_GROUP; 1
    keeps the drafts as drafted).
    """
    decoding = [seq for seq in running if seq.decoding]
    spare = min(draft_budget(len(decoding)), n_batch - len(decoding))  # draft rows left
    rows = len(decoding)
    tokens = float(len(decoding))  # the step's expected tokens: one per decoding sequence, plus drafts'
    decode = []
    for seq in decoding:
        draft: Sequence[int] = ()
        if seq.drafts and drafts is not None and spare > 0:
            limit = min(spare, _draft_limit(seq, n_ctx_per_seq))
            if exact_rows is not None and seq.reproducible:  # reproducible: keep the step invariant
                limit = _exact_draft_limit(exact_rows, seq.kv_len, rows, limit)
            if limit > 0:
                offer = drafts(seq.key, limit, len(decoding) <= NGRAM_MAX_DECODING)
                n, expected = best_draft_length(offer, limit, costs, rows, tokens, seq.kv_len)
                draft = offer.tokens[:n]
                spare -= n
                rows += n
                tokens += expected
        decode.append(DecodePart(seq.key, seq.kv_len, seq.next_token, tuple(draft)))
    if not any(seq.evaluating_prompt for seq in running):  # decode rows only
        decode = _whole_row_groups(decode, row_group)
    prompt_rows = n_batch - rows
    if decoding and prompt_rows_while_decoding is not None:
        prompt_rows = min(prompt_rows, prompt_rows_while_decoding)
    return StepPlan(tuple(decode), _prefill(running, prompt_rows))


def _exact_draft_limit(exact_rows: ExactRows, kv_len: int, rows_before: int, limit: int) -> int:
    """The most drafts, up to `limit`, whose step (`rows_before` rows, the drafts, the sequence's
    token) keeps within the rows invariant at the length it reaches: fewer drafts reach a shorter
    length, where more rows may hold (`ExactRows.at` never grows with the length)."""
    limit = min(limit, exact_rows.at(kv_len + 1) - rows_before)
    while limit > 0 and rows_before + limit > exact_rows.at(kv_len + limit + 1):
        limit -= 1
    return max(0, limit)


def _whole_row_groups(decode: list[DecodePart], row_group: int) -> list[DecodePart]:
    """The drafts cut, last ones first, so that the step's rows fill whole groups of `row_group`,
    when the drafts are long enough to pay for it (and the step has more than one group).

    llamafile's tinyBLAS (which multiplies this model's Q5_0 and Q8_0 weights) and the repacked
    GEMMs take the batch 4 rows at a time, and the rows past the last whole group take another
    pass over every weight. Measured here (bench/step_rows.py, 1,024 tokens cached, weight_repack
    off), in one-row steps: 28 rows 11.9, 29 rows 12.8, 31 rows 14.0, 32 rows 13.3, 33 rows 14.3.
    A draft token cut is drafted again, and verified, in the next step.
    """
    rows = sum(part.n_rows for part in decode)
    excess = rows % row_group if row_group > 1 and rows > row_group else 0
    if excess == 0 or sum(len(part.draft) for part in decode) < excess:
        return decode
    out = list(decode)
    for i in reversed(range(len(out))):
        if excess == 0:
            break
        cut = min(excess, len(out[i].draft))
        out[i] = replace(out[i], draft=out[i].draft[: len(out[i].draft) - cut])
        excess -= cut
    return out


def _prefill(running: Sequence[SeqView], budget: int) -> tuple[PrefillChunk, ...]:
    """Chunks of the prompts still being evaluated, within `budget` rows, shared between owners.

    The rows are split evenly between the owners with prompts to evaluate (an owner needing less
    leaves the rest to the others), and each owner's share goes to its prompts in admission order.
    So a user's short prompt is evaluated in the next step even behind another user's long ones,
    and one user's queue of long prompts slows another's by half, not by all of it (with a
    single owner: oldest admission first, as before)."""
    spans: dict[int, tuple[int, int]] = {}  # key -> (start, end) of what is left to evaluate
    by_owner: dict[Hashable | None, list[SeqView]] = {}
    alone = len(running) == 1
    for seq in running:
        if seq.evaluating_prompt:
            start, end = seq.n_prompt_done, seq.prompt_len
            if seq.reproducible and alone and start < end - 1:
                end -= 1  # the last prompt token gets a step of its own (see above)
            spans[seq.key] = (start, end)
            by_owner.setdefault(seq.owner, []).append(seq)
    shares = _fair_shares({o: sum(spans[s.key][1] - spans[s.key][0] for s in q) for o, q in by_owner.items()}, budget)
    grants: dict[int, int] = {}
    for owner, queue in by_owner.items():
        for seq in queue:
            start, end = spans[seq.key]
            grants[seq.key] = min(shares[owner], end - start)
            shares[owner] -= grants[seq.key]
    chunks = []
    for seq in running:  # in admission order, as the rows are laid out
        if grants.get(seq.key, 0) > 0:
            start = spans[seq.key][0]
            stop = start + grants[seq.key]
            chunks.append(PrefillChunk(seq.key, seq.kv_len, start, stop, stop == seq.prompt_len))
    return tuple(chunks)


def _fair_shares(needs: dict[Hashable | None, int], budget: int) -> dict[Hashable | None, int]:
    """`budget` split evenly among the `needs` (max-min fair: none gets more than it needs, what one
    leaves goes to the others; a remainder to the first owners)."""
    shares = dict.fromkeys(needs, 0)
    wanting = [owner for owner, need in needs.items() if need > 0]
    while budget > 0 and wanting:
        each = max(1, budget // len(wanting))
        for owner in list(wanting):
            given = min(each, needs[owner] - shares[owner], budget)
            shares[owner] += given
            budget -= given
            if shares[owner] == needs[owner]:
                wanting.remove(owner)
            if budget == 0:
                break
    return shares
