"""Slots and the prefix cache: which sequence of the shared KV cache serves a new prompt.

Each slot is one llama.cpp sequence id. A slot remembers the tokens whose keys and values it
holds (position i holds `tokens[i]`); when its request ends, that KV is kept. A new request
takes the free slot whose tokens share the longest common prefix with its prompt (ties and
"no match" go to the least recently used free slot), keeps that prefix and only the rest of
the prompt is evaluated — as llama-server does. At least the last prompt token is always
re-evaluated, because its logits are needed to sample the first completion token.

When another slot — busy or idle — holds a longer prefix of the prompt (a shared system prompt
or file context used by concurrent requests), its KV is copied into the chosen slot first:
llama.cpp copies a whole per-sequence stream (about 10 ms for 8,192 cells of the 0.5B model,
measured here) where recomputing 150 prompt tokens takes 600 ms.

A slot next to a busy one counts as if it matched `ADJACENT_BONUS` more tokens: llama.cpp runs
consecutive sequence ids in one forward pass and every gap costs another pass per decode step,
which over a whole answer outweighs re-reading a short shared prefix (a system prompt).

A slot's cached tokens past the common prefix count against it, up to `EVICT_COST_CAP`: taking
it throws them away, and a later request for them would evaluate them again. Without that, a new
prompt sharing only the system prompt with an idle cached conversation took that slot while
others stood empty, and a user going back to the conversation found nothing cached. The cap keeps
a large, stale cache from outliving every other (past it, the least recently used slot goes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_CHUNK = 256
ADJACENT_BONUS = 128
EVICT_COST_CAP = 256  # cached tokens a slot's loss counts, at most
COPY_MIN_GAIN = 32  # prompt tokens a copy must save to be worth a stream copy


@dataclass(eq=False)
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds, by position
    busy: bool = False
    last_used: int = 0


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix; compares chunk slices in C, then one chunk by hand."""
    limit = min(len(a), len(b))
    start = 0
    while start + _CHUNK <= limit and a[start : start + _CHUNK] == b[start : start + _CHUNK]:
        start += _CHUNK
    end = min(start + _CHUNK, limit)
    while start < end and a[start] == b[start]:
        start += 1
    return start


@dataclass(frozen=True)
class Placement:
    """Where a new prompt goes: its slot, how many prompt tokens it keeps, and where they come from."""

    slot: Slot
    keep: int
    source: Slot | None = None  # copy this slot's KV into `slot` first; None: `slot` holds them


class SlotPool:
    def __init__(self, n_slots: int) -> None:
        self.slots = [Slot(seq_id=i) for i in range(n_slots)]
        self._clock = 0

    def has_free(self) -> bool:
        return any(not s.busy for s in self.slots)

    @property
    def n_free(self) -> int:
        return sum(not s.busy for s in self.slots)

    def tokens_held(self) -> int:
        return sum(len(s.tokens) for s in self.slots)

    def acquire(self, prompt: list[int]) -> Placement:
        """Take the best free slot for `prompt` and say how many prompt tokens it keeps.

        The caller copies `source`'s KV into the slot when there is one, then drops the slot's
        KV from `keep` on and makes `slot.tokens` the kept prompt prefix.
        """
        best: Slot | None = None
        best_score, best_len = float("-inf"), -1
        for slot in self.slots:
            if slot.busy:
                continue
            n = common_prefix_len(slot.tokens, prompt) if slot.tokens else 0
            lost = min(len(slot.tokens) - n, EVICT_COST_CAP)
            score = n - lost + (ADJACENT_BONUS if self._next_to_busy(slot) else 0)
            if score > best_score or (
                score == best_score and best is not None and slot.last_used < best.last_used
            ):
                best, best_score, best_len = slot, score, n
        if best is None:
            raise RuntimeError("no free slot")
        best.busy = True
        source, source_len = self._longest_prefix(prompt, exclude=best)
        limit = max(len(prompt) - 1, 0)
        if source is not None and min(source_len, limit) - min(best_len, limit) >= COPY_MIN_GAIN:
            return Placement(best, min(source_len, limit), source)
        return Placement(best, min(best_len, limit))

    def _longest_prefix(self, prompt: list[int], exclude: Slot) -> tuple[Slot | None, int]:
        found, found_len = None, 0
        for slot in self.slots:
            if slot is not exclude and slot.tokens:
                n = common_prefix_len(slot.tokens, prompt)
                if n > found_len:
                    found, found_len = slot, n
        return found, found_len

    def _next_to_busy(self, slot: Slot) -> bool:
        i = slot.seq_id
        return (i > 0 and self.slots[i - 1].busy) or (i + 1 < len(self.slots) and self.slots[i + 1].busy)

    def bind(self, ctx, placement: Placement) -> int:
        """Make the placement's slot hold its kept prefix in `ctx` (llama.cpp copies a `source` stream at
        the next decode) and return how many tokens it keeps. On a failure the slot goes back holding
        nothing (its KV is unknown then)."""
        slot, keep = placement.slot, placement.keep
        try:
            if placement.source is not None:
                ctx.seq_cp(placement.source.seq_id, slot.seq_id)
                slot.tokens = placement.source.tokens[:keep]
            if not ctx.seq_rm(slot.seq_id, keep, -1):
                ctx.seq_rm(slot.seq_id, -1, -1)
                keep = 0
            del slot.tokens[keep:]
        except BaseException:
            slot.tokens = []
            self.release(slot)
            raise
        return keep

    def release(self, slot: Slot) -> None:
        self._clock += 1
        slot.busy = False
        slot.last_used = self._clock
