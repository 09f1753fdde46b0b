"""The worker thread: owns the llama context and runs the continuous-batching decode loop.

One loop iteration: take new requests from the inbox (blocking only when idle, or for 10 ms when
every running sequence waits for its reader); snapshot the queues and let the pure scheduler
decide (scheduler.py): which cancelled requests to drop or free, which waiting ones to admit
into free slots (owners in turn; the prefix cache picks the slot; admission_steps.py carries it
out), which drafts to use and which rows the step holds; run that plan with llama_decode, sample
every sequence that produced logits, and hand the step's events to their event loops (outbox.py).
Every decision is the scheduler's; this file only carries them out against llama.cpp.

What crosses threads, and nothing else: the inbox (a thread-safe queue), each request's queue,
`cancelled` flag and event counts (sequences.py), the `ready` future, and `published`, the
counters' frozen snapshot after every step (`LlamaCppEngine.stats` reads it, never the live
lists); once `ready` is set, what never changes again (`model`, `metadata`, the context's size).

Backpressure: a sequence with `MAX_UNREAD_EVENTS` events its consumer has not taken (a stream
read slowly) sits out the steps, in its slot, until they are taken: a slow reader costs a slot,
as a long answer does, not memory without bound (one that reads nothing meets the send timeout).

Failures stay local: a request whose sampler cannot be built, whose sampling raises, or whose
tokens make a decode step fail (llama_decode returns an error, or the step raises) gets the
exception in its generator; the others keep going. A failed batched step is undone in the KV cache
and retried one sequence at a time, so only the sequence that fails alone is ended (an error
event, then [DONE], on the API); the others finish their answers.

Speculation (scheduler.py plans it, drafting.py drafts): a decode part's draft rows all get
logits, and `_verify` samples them in order with the request's own sampler, exactly as plain
decoding would, one token at a time (penalties, grammar and the seeded RNG see the same
tokens in the same order): the draft holds while the sampled token equals the drafted one.
The first sampled token that differs (or the one after the last draft) is the next token, as
without a draft; the refused draft's positions are removed from the KV cache. With `draft_gate`,
the cost of a step by its rows is measured at load (step_timing.py) and the plan verifies a draft
only where it is expected to pay (draft_value.py).
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path

import llama_cpp as lc

from coderapi.engines.base import TokenEvent
from coderapi.errors import InternalError, ModelNotReady

from .admission_steps import AdmissionSteps
from .model import LlamaContext, LlamaModel
from .draft_value import DraftOffer, StepCosts
from .huge_pages import onto_huge_pages, thp_available
from .drafting import Proposal
from .invariance import keep_unrepacked_matmuls_on_one_path
from .prefix_cache import SlotPool
from .scheduler import MATMUL_ROW_GROUP, MAX_DRAFT_ROWS, ExactRows, plan_step
from .step_timing import calibrate_speculation
from .outbox import Outbox
from .sequences import BatchPart, Request, Sequence, WorkerStats, batch_parts, fill_batch
from .token_events import count_drafts, sample_row

log = logging.getLogger("coderapi.engines.llama_cpp")

STOP = object()  # inbox sentinel: finish and free everything
# Backpressure (see above): a token's events hold ~4 KB with 20 top logprobs; above the 64 tokens
# one speculative step may release at once.
MAX_UNREAD_EVENTS = 256
READER_WAIT_SECONDS = 0.01  # how long an idle worker waits for a reader (or a new request)


class Worker(AdmissionSteps, threading.Thread):
    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx_per_seq: int,
        n_parallel: int,
        n_threads: int,
        n_batch: int,
        prompt_rows_while_decoding: int | None = None,
        ngram_speculation: bool = True,
        exact_speculation: bool = True,
        repack: bool = True,
        draft_gate: bool = True,
        huge_pages: bool = True,
    ) -> None:
        super().__init__(name="llama-cpp-worker", daemon=True)
        self.model_path = model_path
        self.n_ctx_per_seq = n_ctx_per_seq
        self.n_parallel = n_parallel
        self.n_threads = n_threads
        self.n_batch = n_batch
        self.prompt_rows_while_decoding = prompt_rows_while_decoding
        self.ngram_speculation = ngram_speculation
        self.exact_speculation = exact_speculation
        self.repack = repack
        self.draft_gate = draft_gate
        self.huge_pages = huge_pages
        self.exact_rows: ExactRows | None = None  # set at load when exact_speculation (invariance.py)
        self.step_costs: StepCosts | None = None  # set at load when draft_gate (step_timing.py)
        if exact_speculation and not repack:  # before any worker runs a matmul (invariance.py)
            keep_unrepacked_matmuls_on_one_path()
        self.ready: concurrent.futures.Future = concurrent.futures.Future()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.model: LlamaModel | None = None
        self.metadata: dict[str, str] = {}
        self.ctx: LlamaContext | None = None
        self.pool = SlotPool(n_parallel)
        self.waiting: deque[Request] = deque()
        self.running: list[Sequence] = []
        self.prefix_queries = 0  # prompt tokens looked up in the prefix cache
        self.prefix_hits = 0  # of those, tokens kept from the cache
        self.preemptions = 0  # sequences set aside for another user's turn
        self.published = WorkerStats()  # read by other threads; replaced whole after each step
        self._outbox = Outbox()
        self._copy_pending = False  # a KV stream copy (prefix_cache.SlotPool.bind) not yet applied
        self._batch = None
        self._stopping = False
        self._step_kv = -1  # tokens cached before the current step (-1: no step yet; for StepCosts.overhead)

    # -- lifecycle ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._load()
        except BaseException as exc:
            self._free()
            self.ready.set_exception(exc)
            return
        self.ready.set_result(None)
        try:
            stalled = False  # the last step had nothing to run: every sequence waits for its reader
            while not self._stopping:
                self._step_kv, started = -1, time.perf_counter()
                try:
                    idle = not self.running and not self.waiting
                    self._pull(block=idle or stalled, timeout=READER_WAIT_SECONDS if stalled and not idle else None)
                    started = time.perf_counter()
                    stalled = self._step()
                except Exception:  # a bug, not a request's fault: fail the running ones, go on
                    log.exception("llama.cpp worker step failed")
                    self._fail_running()
                self._publish()  # before the events go out: whoever sees them sees this step's stats
                self._outbox.flush()
                self._time_overhead(time.perf_counter() - started)
        finally:
            self._shutdown()

    def _time_overhead(self, step_seconds: float) -> None:
        if self.step_costs is not None and self._step_kv >= 0 and self._batch.n_tokens <= MAX_DRAFT_ROWS + 1:
            # a step of decode rows only: a prompt's rows bring their own filling and sampling
            self.step_costs = self.step_costs.after_step(self._batch.n_tokens, self._step_kv, step_seconds)

    def _fail_running(self) -> None:
        for seq in list(self.running):
            try:
                self._fail(seq, InternalError("The inference engine failed."))
            except Exception:
                log.exception("could not free a failed sequence")
                if seq in self.running:
                    self.running.remove(seq)

    def _load(self) -> None:
        huge_pages = self.huge_pages and thp_available()  # else the file stays mapped (shared page cache)
        with onto_huge_pages(huge_pages):  # before the step timing below: it should see the pages steps run on
            self.model = LlamaModel(self.model_path, repack=self.repack, huge_pages=huge_pages)
            self.ctx = LlamaContext(
                self.model, n_ctx=self.n_ctx_per_seq * self.n_parallel, n_seq_max=self.n_parallel,
                n_batch=self.n_batch, n_threads=self.n_threads,
            )
        self.metadata = self.model.metadata()
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        for i in range(self.n_batch):
            self._batch.n_seq_id[i] = 1
        self.exact_rows, self.step_costs = calibrate_speculation(
            self.model, self.ctx, self._batch, self.n_ctx_per_seq, self.n_batch,
            exact=self.exact_speculation, timed=self.draft_gate,
        )

    def _shutdown(self) -> None:
        closed = ModelNotReady("The inference engine is shutting down.")
        for seq in list(self.running):
            self._outbox.send(seq.req, closed)
            self._release(seq)
        self._pull(block=False)
        for req in self.waiting:
            self._outbox.send(req, closed)
            if req.set_aside is not None:
                req.set_aside.sampler.free()
        self.waiting.clear()
        self._outbox.flush()
        self._free()

    def _free(self) -> None:
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx is not None:
            self.ctx.free()
        if self.model is not None:
            self.model.free()

    # -- requests in ----------------------------------------------------------------------------

    def _pull(self, block: bool, timeout: float | None = None) -> None:
        if block:
            try:
                self._accept(self.inbox.get(timeout=timeout))
            except queue.Empty:
                return
        while not self.inbox.empty():
            self._accept(self.inbox.get_nowait())

    def _accept(self, item) -> None:
        if item is STOP:
            self._stopping = True
        else:
            self.waiting.append(item)

    def _step(self) -> bool:
        """One decode step; True when sequences run but all sit out, waiting for their readers."""
        self._apply_admission()
        if not self.running:
            return False
        by_key = {seq.key: seq for seq in self.running}
        proposals: dict[int, Proposal | None] = {}

        def peek(key: int, limit: int, use_context: bool) -> DraftOffer:  # read-only: see DraftSource
            proposals[key] = proposal = by_key[key].drafter.peek(limit, use_context=use_context)
            if proposal is None:
                return DraftOffer(())
            return DraftOffer(proposal.tokens, proposal.cursor.expected_accepted)

        views = [seq.view() for seq in self.running if self._reader_keeps_up(seq)]
        if not views:
            return True
        plan = plan_step(views, self.n_batch, self.n_ctx_per_seq, self.exact_rows, peek, MATMUL_ROW_GROUP,
                         self.prompt_rows_while_decoding, self.step_costs)
        self._run_parts(batch_parts(plan, by_key, proposals), isolate=True)
        return False

    @staticmethod
    def _reader_keeps_up(seq: Sequence) -> bool:
        return seq.req.unread < MAX_UNREAD_EVENTS

    # -- one decode step ------------------------------------------------------------------------

    def _run_parts(self, parts: list[BatchPart], isolate: bool) -> None:
        # Each sequence has its own KV stream of n_ctx_per_seq cells and never outgrows it (the
        # engine refuses longer prompts, generation stops at the limit), so idle prefix caches
        # never take room from a running sequence: a failure here is the batch's own.
        try:
            rc = self._decode(parts)
        except Exception:
            log.exception("decode step of %d sequence(s) raised", len(parts))
            self._undo(parts)
            rc = None
        if rc == 0:
            self._commit(parts)
        elif isolate and len(parts) > 1:  # find the culprit: retry each sequence alone
            for part in parts:
                self._run_parts([part], isolate=False)
        else:
            why = "raised" if rc is None else f"failed (code {rc})"
            for part in parts:
                self._fail(part.seq, InternalError(f"The inference engine's decode step {why}."))

    def _decode(self, parts: list[BatchPart]) -> int:
        fill_batch(self._batch, parts)
        rc = lc.llama_decode(self.ctx.ptr, self._batch)
        self._step_kv = max(part.start_pos for part in parts)
        self._copy_pending = False  # llama_decode applies pending stream copies first
        if rc != 0:
            self._undo(parts)
        return rc

    def _undo(self, parts: list[BatchPart]) -> None:
        """Put the KV cache back as it was before a failed step."""
        for part in parts:
            self.ctx.seq_rm(part.seq.slot.seq_id, part.start_pos, -1)

    def _commit(self, parts: list[BatchPart]) -> None:
        for part in parts:
            seq = part.seq
            seq.slot.tokens.extend(part.tokens)
            if seq.next_token is not None:
                seq.next_token = None
            else:
                seq.n_prompt_done += len(part.tokens)
        for part in parts:
            if part.wants_logits:
                try:
                    self._verify(part)
                except Exception as exc:
                    log.exception("sampling failed")
                    self._fail(part.seq, exc)

    def _verify(self, part: BatchPart) -> None:
        """Sample each row in order while the draft holds; drop the refused draft from the KV."""
        seq, draft = part.seq, part.draft
        row = 0
        while True:
            token, event = self._sample(seq, part.logits_index + row)
            if event.finish_reason is not None or row == len(draft) or token != draft[row]:
                break
            row += 1
        accepted = row + (row < len(draft) and token == draft[row])
        # Rows 0..row fed tokens the output keeps (a prompt chunk's last row is its last token).
        keep = part.start_pos + len(part.tokens) - len(draft) + row
        if keep < len(seq.slot.tokens):
            self.ctx.seq_rm(seq.slot.seq_id, keep, -1)
            del seq.slot.tokens[keep:]
        if seq.drafter is not None:
            seq.drafter.verified(len(draft), accepted)
            count_drafts(seq.drafter, event)
        if event.finish_reason is None:
            seq.next_token = token
        else:
            self._release(seq)

    def _sample(self, seq: Sequence, index: int) -> tuple[int, TokenEvent]:
        """Sample one token from batch row `index`, send its event; the sequence stays running."""
        token, event = sample_row(self.model, self.ctx, seq, index, self.n_ctx_per_seq)
        self._outbox.send(seq.req, event)
        return token, event

    # -- sequences out --------------------------------------------------------------------------

    def _release(self, seq: Sequence) -> None:
        seq.sampler.free()
        self.pool.release(seq.slot)
        self.running.remove(seq)

    def _fail(self, seq: Sequence, exc: BaseException) -> None:
        self._outbox.send(seq.req, exc)
        self.ctx.seq_rm(seq.slot.seq_id, -1, -1)
        seq.slot.tokens.clear()
        self._release(seq)

    def _publish(self) -> None:
        self.published = WorkerStats(
            len(self.running), len(self.waiting), self.pool.tokens_held(), self.prefix_queries, self.prefix_hits,
            sum(not self._reader_keeps_up(seq) for seq in self.running), self.preemptions,
        )
