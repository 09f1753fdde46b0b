"""Slots and the prefix cache: which sequence of the shared KV cache serves a new prompt.

Each slot is one llama.cpp sequence id. A slot remembers the tokens whose keys and values it
holds (position i holds `tokens[i]`); when its request ends, that KV is kept. A new request
takes the free slot whose tokens share the longest common prefix with its prompt (ties and
"no match" go to the least recently used free slot), keeps that prefix and only the rest of
the prompt is evaluated — as llama-server does. At least the last prompt token is always
re-evaluated, because its logits are needed to sample the first completion token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_CHUNK = 256


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


class SlotPool:
    def __init__(self, n_slots: int) -> None:
        self.slots = [Slot(seq_id=i) for i in range(n_slots)]
        self._clock = 0

    def has_free(self) -> bool:
        return any(not s.busy for s in self.slots)

    def n_busy(self) -> int:
        return sum(s.busy for s in self.slots)

    def tokens_held(self) -> int:
        return sum(len(s.tokens) for s in self.slots)

    def acquire(self, prompt: list[int]) -> tuple[Slot, int]:
        """Take the best free slot for `prompt`; returns it and how many prompt tokens to keep.

        The caller must drop the slot's KV from the returned position on (`seq_rm`) and
        truncate `slot.tokens` to it (see `truncate`).
        """
        best: Slot | None = None
        best_len = -1
        for slot in self.slots:
            if slot.busy:
                continue
            n = common_prefix_len(slot.tokens, prompt) if slot.tokens else 0
            if n > best_len or (n == best_len and best is not None and slot.last_used < best.last_used):
                best, best_len = slot, n
        if best is None:
            raise RuntimeError("no free slot")
        best.busy = True
        keep = min(best_len, len(prompt) - 1)
        return best, max(keep, 0)

    def release(self, slot: Slot) -> None:
        self._clock += 1
        slot.busy = False
        slot.last_used = self._clock

    def idle_with_cache(self) -> list[Slot]:
        return [s for s in self.slots if not s.busy and s.tokens]
