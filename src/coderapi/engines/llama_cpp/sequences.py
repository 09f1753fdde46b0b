"""A request on its way through the worker, and the worker's state for it once admitted.

A `Request` crosses threads: the event loop creates it and reads its queue; the worker fills
the queue (through `loop.call_soon_threadsafe`) and watches `cancelled`, a plain attribute the
generator sets when it is closed. `sent` (the worker's count of events) and `taken` (the
consumer's) tell the worker how far the reader is behind: each is written by one thread only. The worker reads `cancelled` once per step, into the
snapshot it plans from (scheduler.py), so a step acts on one consistent view of it.

A `Sequence` is the worker's private state for an admitted request: only the worker thread
reads or writes it. What other threads may read of the worker's state is `WorkerStats`, a
frozen snapshot the worker publishes after every step. `view()` is the snapshot the pure scheduler plans from; `BatchPart` is one
sequence's share of a planned step as the worker runs it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from coderapi.engines.base import SamplingParams

from .detok import Utf8Stream
from .drafting import Drafter, Proposal
from .prefix_cache import Slot
from .sampling import Sampler
from .scheduler import SeqView, StepPlan

_ids = itertools.count(1)


class Request:
    __slots__ = (
        "id", "prompt", "params", "loop", "queue", "cancelled", "finished", "created_at", "sent", "taken", "set_aside",
    )

    def __init__(
        self, prompt: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.id = next(_ids)
        self.prompt = prompt
        self.params = params
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False  # set by the consumer side; read by the worker
        self.finished = False  # set by the consumer side once the final event arrived
        self.created_at = time.monotonic()
        self.sent = 0  # events the worker has sent (worker thread only)
        self.taken = 0  # events the consumer has taken off the queue (consumer only)
        self.set_aside: Sequence | None = None  # preempted: its sequence, to go on with (worker thread only)

    @property
    def unread(self) -> int:
        """Events sent that the consumer has not taken yet."""
        return self.sent - self.taken


class Sequence:
    """An admitted request bound to a slot (worker thread only)."""

    __slots__ = (
        "req",
        "slot",
        "sampler",
        "stream",
        "n_prompt_done",
        "cached",
        "next_token",
        "n_generated",
        "split_last",
        "queue_seconds",
        "drafter",
        "context",
    )

    def __init__(
        self,
        req: Request,
        slot: Slot,
        sampler: Sampler | None,
        cached: int,
        drafter: Drafter | None = None,
    ) -> None:
        self.req = req
        self.slot = slot
        self.sampler = sampler
        self.stream = Utf8Stream()
        self.n_prompt_done = cached  # prompt tokens already in the KV cache
        self.cached = cached  # of those, served from the prefix cache
        self.next_token: int | None = None  # sampled, not yet fed to the model
        self.n_generated = 0
        self.queue_seconds = time.monotonic() - req.created_at  # inbox + waiting queue
        params = req.params
        self.split_last = params.temperature <= 0.0 or params.seed is not None
        self.drafter = drafter
        self.context = req.prompt  # what it evaluates before it samples (see `set_aside`)

    def set_aside(self) -> None:
        """Preempted (scheduler.plan_preemption): it gives up its slot. A sequence that decodes makes
        what its KV held and the token it was about to feed the context it evaluates when it gets a
        slot again; sampling from that context's last row goes on where it stopped (its sampler,
        drafter and text kept). One still evaluating its context evaluates the rest of it then."""
        if self.next_token is not None:
            self.context = [*self.slot.tokens, self.next_token]
            self.next_token = None
        self.req.set_aside = self

    def resume(self, slot: Slot, cached: int) -> None:
        """Back in `slot`, which holds the first `cached` tokens of its context."""
        self.slot, self.n_prompt_done = slot, cached
        self.req.set_aside = None

    @property
    def key(self) -> int:
        """Names the sequence in a step plan: its slot's llama.cpp sequence id."""
        return self.slot.seq_id

    @property
    def prefilling(self) -> bool:
        return self.n_prompt_done < len(self.context)

    def view(self) -> SeqView:
        return SeqView(
            key=self.slot.seq_id,
            prompt_len=len(self.context),
            n_prompt_done=self.n_prompt_done,
            kv_len=len(self.slot.tokens),
            next_token=self.next_token,
            n_generated=self.n_generated,
            max_tokens=self.req.params.max_tokens,
            reproducible=self.split_last,
            drafts=self.drafter is not None,
            owner=self.req.params.owner,
            cancelled=self.req.cancelled,
        )


@dataclass(eq=False)
class BatchPart:
    """The tokens one sequence contributes to a step, at positions start_pos, start_pos+1, ..."""

    seq: Sequence
    tokens: list[int]
    start_pos: int
    wants_logits: bool  # True when the last token's logits are sampled after the step
    logits_index: int = -1  # its row in the batch (the first draft row's input is tokens[0])
    draft: list[int] = field(default_factory=list)  # tokens[1:] of a decode part: to verify


def batch_parts(plan: StepPlan, by_key: dict[int, Sequence], proposals: dict[int, Proposal | None]) -> list[BatchPart]:
    """A step plan as the sequences' batch parts; the drafts used are taken from their drafters."""
    parts = []
    for part in plan.decode:
        seq = by_key[part.key]
        draft = list(part.draft)
        if seq.drafter is not None:  # anchors the cursor that drafted, as proposing would
            seq.drafter.take(proposals.get(part.key), len(draft))
        parts.append(BatchPart(seq, [part.token, *draft], part.start_pos, True, draft=draft))
    for chunk in plan.prefill:
        seq = by_key[chunk.key]
        parts.append(BatchPart(seq, seq.context[chunk.start : chunk.stop], chunk.start_pos, chunk.wants_logits))
    return parts


def fill_batch(batch, parts: list[BatchPart]) -> None:
    """Write the step's parts into a llama_batch, each row's logits wanted or not; sets the parts'
    `logits_index`."""
    i = 0
    # Ascending seq ids: llama.cpp batches per-sequence KV streams together only in that order.
    for part in sorted(parts, key=lambda p: p.seq.slot.seq_id):
        seq_id = part.seq.slot.seq_id
        for pos, token in enumerate(part.tokens, start=part.start_pos):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = 0
            i += 1
        if part.wants_logits:
            rows = 1 + len(part.draft)  # the next token's row, then one per draft token
            for row in range(i - rows, i):
                batch.logits[row] = 1
            part.logits_index = i - rows
    batch.n_tokens = i


@dataclass(frozen=True)
class WorkerStats:
    """The worker's counters after its latest step, for other threads (one attribute swap)."""

    running: int = 0
    waiting: int = 0  # admitted to the worker's queue, not yet to a slot (the inbox not counted)
    kv_tokens: int = 0  # tokens the slots hold in the KV cache, prefix caches included
    prefix_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_hits: int = 0  # of those, tokens kept from the cache
    waiting_for_reader: int = 0  # running sequences sitting out until their reader catches up
    preemptions: int = 0  # sequences set aside for another user's turn, so far
