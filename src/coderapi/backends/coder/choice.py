"""One choice: engine token events -> text deltas with stops applied and logprobs aligned."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import AsyncIterator

from coderapi.backends.base import RequestTally
from coderapi.backends.coder.lazy_tools import LazyToolRun, LazyTools
from coderapi.backends.coder.stops import StopMatcher
from coderapi.engines.base import Engine, SamplingParams, TokenEvent
from coderapi.protocol.common import LogprobEntry, TopLogprobEntry


@dataclass
class ChoiceDelta:
    index: int
    text: str = ""
    logprobs: list[LogprobEntry] = field(default_factory=list)
    finish_reason: str | None = None


def _entry(engine: Engine, event: TokenEvent) -> LogprobEntry:
    token = engine.token_text(event.token_id)
    return LogprobEntry(
        token=token,
        logprob=event.logprob if event.logprob is not None else 0.0,
        bytes=list(token.encode("utf-8")),
        top_logprobs=[
            TopLogprobEntry(token=t.text, logprob=t.logprob, bytes=list(t.text.encode("utf-8")))
            for t in event.top_logprobs or []
        ],
    )


class _LogprobAligner:
    """Releases a token's logprob only once all of its text has been released past the stop check."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, LogprobEntry]] = []
        self._generated = 0
        self._released = 0

    def add(self, text: str, entry: LogprobEntry | None) -> None:
        self._generated += len(text)
        if entry is not None:
            self._pending.append((self._generated, entry))

    def release(self, emitted: str, *, final: bool = False) -> list[LogprobEntry]:
        self._released += len(emitted)
        ready = [e for end, e in self._pending if final or end <= self._released]
        self._pending = [] if final else [(end, e) for end, e in self._pending if end > self._released]
        return ready


async def run_choice(
    engine: Engine,
    index: int,
    prompt_ids: list[int],
    params: SamplingParams,
    stops: list[str],
    tally: RequestTally,
    lazy: LazyTools | None = None,
) -> AsyncIterator[ChoiceDelta]:
    """`lazy`: tool calls under tool_choice "auto" get their grammar once begun (lazy_tools.py)."""
    matcher = StopMatcher(stops)
    aligner = _LogprobAligner()
    want_logprobs = params.logprobs is not None
    run = LazyToolRun(engine, prompt_ids, params, lazy) if lazy is not None else None
    events = run.events() if run is not None else engine.generate(prompt_ids, params)
    finish_reason = "length"
    last_token_at: float | None = None
    verified = (0, 0)  # prediction tokens accepted and refused so far (cumulative on the events)
    try:
        async for event in events:
            counts = (event.accepted_prediction_tokens, event.rejected_prediction_tokens)
            if counts[0] < verified[0] or counts[1] < verified[1]:
                verified = (0, 0)  # a restarted generation counts from 0 again
            tally.count_prediction(counts[0] - verified[0], counts[1] - verified[1])
            verified = counts
            now = time.monotonic()
            tally.count_token(None if last_token_at is None else now - last_token_at)
            last_token_at = now
            if index == 0:
                tally.note_engine(event.cached_prompt_tokens, event.queue_seconds)
            aligner.add(event.text, _entry(engine, event) if want_logprobs and event.finish_reason != "stop" else None)
            emitted = matcher.feed(event.text)
            if matcher.stopped:
                finish_reason = "stop"
                yield ChoiceDelta(index, emitted, aligner.release(emitted))
                break
            if event.finish_reason is not None:
                finish_reason = event.finish_reason
                emitted += matcher.flush()
                yield ChoiceDelta(index, emitted, aligner.release(emitted, final=True))
                break
            if emitted:
                yield ChoiceDelta(index, emitted, aligner.release(emitted))
    finally:
        await events.aclose()
        if run is not None:
            tally.add_completion_tokens(run.discarded)  # generated, then dropped at a restart: still counted
    yield ChoiceDelta(index, finish_reason=finish_reason)
