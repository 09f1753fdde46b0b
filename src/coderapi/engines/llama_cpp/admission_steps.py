"""The worker's admission half: which waiting requests get a slot, and which running sequences are
set aside so that another user's get one (scheduler.py's plan_admission and plan_preemption, carried
out against the slot pool and the llama context). A mixin of `Worker` (worker.py), whose state it
works on, on the worker thread only.
"""

from __future__ import annotations

from collections import deque

from .drafting import drafter_for
from .sampling import make_sampler
from .scheduler import WaitingView, plan_admission, plan_preemption
from .sequences import Request, Sequence


class AdmissionSteps:
    """Uses the worker's `waiting`, `running`, `pool`, `ctx`, `model`, `_outbox`, `_copy_pending`,
    counters and `_release`."""

    def _apply_admission(self) -> None:
        if not self.waiting and not any(seq.req.cancelled for seq in self.running):
            return  # most steps: nothing to plan (saves the plans' lists on every token)
        self._preempt_planned()
        while self._admit_planned():  # a request that failed admission left its slot free
            pass

    def _preempt_planned(self) -> None:
        """Set aside the sequences `plan_preemption` names; their requests wait again, in arrival order."""
        if not self.waiting or self._copy_pending:  # a slot's pending copy lands at the next decode
            return
        waiting = [WaitingView(req.id, req.cancelled, req.params.owner) for req in self.waiting]
        keys = plan_preemption([seq.view() for seq in self.running], waiting, self.pool.n_free)
        for seq in [s for s in self.running if s.key in keys]:
            seq.set_aside()
            self.pool.release(seq.slot)  # its KV stays as a prefix cache, maybe for its own return
            self.running.remove(seq)
            self.waiting.append(seq.req)
            self.preemptions += 1
        if keys:
            self.waiting = deque(sorted(self.waiting, key=lambda req: req.id))

    def _admit_planned(self) -> bool:
        """Carry out one admission plan; True when some admission failed."""
        waiting = [WaitingView(req.id, req.cancelled, req.params.owner) for req in self.waiting]
        cancelled = [seq.key for seq in self.running if seq.req.cancelled]
        staying = [seq.req.params.owner for seq in self.running if not seq.req.cancelled]
        plan = plan_admission(waiting, cancelled, self.pool.n_free, staying)
        leaving, admitted = {*plan.drop, *plan.admit}, {req.id: req for req in self.waiting if req.id in plan.admit}
        for req in self.waiting:
            if req.id in plan.drop and req.set_aside is not None:
                req.set_aside.sampler.free()
        self.waiting = deque(req for req in self.waiting if req.id not in leaving)
        for seq in [s for s in self.running if s.key in plan.release]:
            self._release(seq)  # its KV stays valid: kept as prefix cache
        failed = False
        for req in (admitted[req_id] for req_id in plan.admit):  # owners in turn (plan_admission)
            try:
                self._admit(req)
            except Exception as exc:
                self._outbox.send(req, exc)
                failed = True
        return failed

    def _admit(self, req: Request) -> None:
        if req.set_aside is not None:
            return self._resume(req.set_aside)
        sampler = make_sampler(self.model, req.params, req.prompt)
        try:
            placement = self.pool.acquire(req.prompt)
            keep = self.pool.bind(self.ctx, placement)
            self._copy_pending |= placement.source is not None
        except BaseException:
            sampler.free()
            raise
        try:
            drafter = drafter_for(req.prompt, req.params, self.ngram_speculation, self.n_ctx_per_seq)
        except BaseException:
            sampler.free()
            self.pool.release(placement.slot)  # its KV, the kept prefix, stays valid
            raise
        self.prefix_queries += len(req.prompt)
        self.prefix_hits += keep
        self.running.append(Sequence(req, placement.slot, sampler, keep, drafter))

    def _resume(self, seq: Sequence) -> None:
        """A sequence set aside gets a slot again; it evaluates what the slot lacks of its context."""
        try:
            placement = self.pool.acquire(seq.context)
            seq.resume(placement.slot, self.pool.bind(self.ctx, placement))
            self._copy_pending |= placement.source is not None
        except BaseException:
            seq.sampler.free()
            raise
        self.running.append(seq)
