"""Request and sequence state, and the plan of one decode step (continuous batching).

A `Request` crosses threads: the event loop creates it and reads its queue; the worker fills
the queue (through `loop.call_soon_threadsafe`) and watches `cancelled`, a plain attribute the
generator sets when it is closed. A `Sequence` is the worker's private state for an admitted
request.

Each step feeds one token for every decoding sequence, then spends what is left of `n_batch`
on chunks of prompts still being evaluated, oldest admission first (chunked prefill). A long
prompt therefore delays the running streams by at most one chunk per step.

Reproducible requests (greedy, or sampled with a seed) evaluate their last prompt token in a
step of its own when they are the only running sequence. llama.cpp's CPU kernels are not
batch-invariant (flash attention switches to a tiled kernel at 8 query rows, quantized and
repacked matmuls use different kernels for different row counts), so the first token's logits
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
sequences decode.

Reproducible requests (greedy, or seeded) get the same answer with drafts as without: when the
worker knows how many rows a step may hold with every row's logits bit-identical to a one-row
step (`exact_rows`, invariance.py), their drafts keep the step's decode rows within it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from coderapi.engines.base import SamplingParams

from .detok import Utf8Stream
from .drafting import Drafter
from .prefix_cache import Slot
from .greedy import GreedyPicker
from .sampling import SamplerChain

_ids = itertools.count(1)


class Request:
    __slots__ = ("id", "prompt", "params", "loop", "queue", "cancelled", "finished", "created_at")

    def __init__(
        self, prompt: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.id = next(_ids)
        self.prompt = prompt
        self.params = params
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False  # set by the consumer side; read by the worker
        self.finished = False  # set by the consumer side once the final event arrived
        self.created_at = time.monotonic()


class Sequence:
    """An admitted request bound to a slot."""

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
    )

    def __init__(
        self,
        req: Request,
        slot: Slot,
        sampler: SamplerChain | GreedyPicker,
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

    @property
    def prefilling(self) -> bool:
        return self.n_prompt_done < len(self.req.prompt)


@dataclass(eq=False)
class BatchPart:
    """The tokens one sequence contributes to a step, at positions start_pos, start_pos+1, ..."""

    seq: Sequence
    tokens: list[int]
    start_pos: int
    wants_logits: bool  # True when the last token's logits are sampled after the step
    logits_index: int = -1  # its row in the batch (the first draft row's input is tokens[0])
    draft: list[int] = field(default_factory=list)  # tokens[1:] of a decode part: to verify


MAX_DRAFT_ROWS = 32  # draft rows per step when one sequence decodes
DRAFT_ROWS_LOST_PER_SEQUENCE = 4  # ... and fewer for every other decoding sequence
NGRAM_MAX_DECODING = 2


def draft_budget(n_decoding: int) -> int:
    """Draft rows one step may verify, all sequences together, when `n_decoding` sequences decode."""
    return max(0, MAX_DRAFT_ROWS - DRAFT_ROWS_LOST_PER_SEQUENCE * (n_decoding - 1))


def _draft_limit(seq: Sequence, n_ctx_per_seq: int) -> int:
    """Draft tokens this sequence may still verify: every one could become an output token."""
    params = seq.req.params
    room_tokens = params.max_tokens - seq.n_generated - 1
    room_ctx = n_ctx_per_seq - len(seq.slot.tokens) - 2  # the next token and at least one more
    return min(room_tokens, room_ctx)


def plan_step(
    running: list[Sequence], n_batch: int, n_ctx_per_seq: int = 1 << 30, exact_rows: int | None = None
) -> list[BatchPart]:
    """Decode tokens first (one per decoding sequence, plus drafts), then prompt chunks in admission order."""
    parts: list[BatchPart] = []
    budget = n_batch
    alone = len(running) == 1
    decoding = [seq for seq in running if seq.next_token is not None]
    drafts = min(draft_budget(len(decoding)), n_batch - len(decoding))
    rows = len(decoding)
    for seq in decoding:
        draft: list[int] = []
        if seq.drafter is not None and drafts > 0:
            limit = min(drafts, _draft_limit(seq, n_ctx_per_seq))
            if exact_rows is not None and seq.split_last:  # reproducible: keep the step invariant
                limit = min(limit, exact_rows - rows)
            draft = seq.drafter.propose(limit, use_context=len(decoding) <= NGRAM_MAX_DECODING)
            drafts -= len(draft)
            rows += len(draft)
        tokens = [seq.next_token, *draft]
        parts.append(BatchPart(seq, tokens, len(seq.slot.tokens), True, draft=draft))
        budget -= len(tokens)
    for seq in running:
        if budget <= 0:
            break
        if seq.next_token is None and seq.prefilling:
            prompt = seq.req.prompt
            start = seq.n_prompt_done
            end = len(prompt)
            if seq.split_last and alone and start < end - 1:
                end -= 1  # the last prompt token gets a step of its own (see above)
            take = min(budget, end - start)
            done = start + take == len(prompt)
            parts.append(BatchPart(seq, prompt[start : start + take], len(seq.slot.tokens), done))
            budget -= take
    return parts
