"""Stop strings over a stream of text pieces: never returns the stop, never emits half of one."""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Returns the text that is now safe to emit; sets `stopped` once a stop string appears."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        buffer = self._held + text
        # The stop that is complete first ends the text (the longest, on a tie), as generation
        # would have stopped there: with the earliest *start*, a longer stop that begins first
        # but ends later would win only when the same piece happens to hold both.
        hits = [(i + len(s), i) for s in self._stops if (i := buffer.find(s)) >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buffer[: min(hits)[1]]
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """At the end of generation the held text is not a stop after all."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_suffix(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that begins some stop string."""
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best
