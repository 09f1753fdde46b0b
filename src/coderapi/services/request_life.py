"""One request's life as a typed state machine: what it holds, how it ended, recorded once.

    OPEN ──admitted()──▶ ADMITTED ──first token──▶ GENERATING
      │                     │                          │
      └─────────────── end(error | None) ──────────────┴──▶ ENDED   (exactly once)

How it ended is decided by where it was when it ended (`ending_for`), not by a status code:
- no error: success (200);
- the client went away (cancelled, the stream closed early, or `ClientLeft` while its body was
  being read): cancelled (499), charged for the tokens made;
- an error from an admission gate (`gate()`: key, in-flight cap, rate limits, cost hold):
  refused, whatever the error;
- an error while OPEN outside a gate (the body, the model name): the request is wrong, an error;
- an error once ADMITTED but before the first token: refused when the backend turned the request
  away (no capacity or no permission: `BACKEND_REFUSALS`), an error otherwise;
- an error once GENERATING: an error;
- anything that is not a `CoderapiError`: an error (500, internal_error).

Ending releases what the request holds, once: the in-flight count now, the rate-limit tokens and
the cost hold with the usage record (`Metering.record`, given at construction).
"""

from __future__ import annotations

import asyncio
import enum
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

from coderapi.backends.base import RequestTally
from coderapi.config import ModelSpec
from coderapi.errors import CoderapiError, Overloaded, PermissionDenied, RateLimited, ServiceUnavailable
from coderapi.services.account_types import Principal

if TYPE_CHECKING:
    from coderapi.services.credit_leases import CostHold

T = TypeVar("T")

# The request's body, or a coroutine function that reads it (read once the request holds its slot).
BodySource = bytes | Callable[[], Awaitable[bytes]]


class ClientLeft(Exception):
    """Raised by a body's reader: the client hung up before its whole body arrived."""


class State(enum.Enum):
    OPEN = "open"  # received: the key, the limits and the body are being checked
    ADMITTED = "admitted"  # every gate passed (cost held): the backend is working on it
    GENERATING = "generating"  # the backend made its first token
    ENDED = "ended"  # recorded; nothing more happens to it


TRANSITIONS: dict[State, frozenset[State]] = {
    State.OPEN: frozenset({State.ADMITTED, State.ENDED}),
    State.ADMITTED: frozenset({State.GENERATING, State.ENDED}),
    State.GENERATING: frozenset({State.ENDED}),
    State.ENDED: frozenset(),
}


class Status(str, enum.Enum):
    """The usage row's status. Success and cancelled are charged (tokens were made); the others are free."""

    SUCCESS = "success"
    CANCELLED = "cancelled"
    ERROR = "error"
    REFUSED = "refused"

    @property
    def charged(self) -> bool:
        return self in (Status.SUCCESS, Status.CANCELLED)


# What a backend raises to turn a request away before it made a token (queue full, upstream busy).
BACKEND_REFUSALS = (PermissionDenied, RateLimited, Overloaded, ServiceUnavailable)


@dataclass(frozen=True)
class Ending:
    status: Status
    status_code: int
    error_code: str | None = None


SUCCESS = Ending(Status.SUCCESS, 200)
CANCELLED = Ending(Status.CANCELLED, 499, "client_disconnected")
INTERNAL = Ending(Status.ERROR, 500, "internal_error")


def ending_for(state: State, error: BaseException | None, *, at_gate: bool = False) -> Ending:
    """How a request ends, given where it was (`state`, and whether inside an admission gate)."""
    if error is None:
        return SUCCESS
    if isinstance(error, (asyncio.CancelledError, GeneratorExit, ClientLeft)):
        return CANCELLED
    if not isinstance(error, CoderapiError):
        return INTERNAL
    if state is State.OPEN:
        refused = at_gate
    elif state is State.ADMITTED:
        refused = isinstance(error, BACKEND_REFUSALS)
    else:
        refused = False
    return Ending(Status.REFUSED if refused else Status.ERROR, error.status_code, error.code)


class InvalidTransition(RuntimeError):
    """A programming error: the code moved a request's life where it cannot go."""


class RequestLife:
    """One request (inference, tokenize) from receipt to its usage record."""

    def __init__(
        self, principal: Principal, endpoint: str, request_id: str,
        record: Callable[["RequestLife", Ending], None], *, origin: str = "api",
        client_request_id: str | None = None,
    ) -> None:
        self.principal = principal
        self.endpoint = endpoint  # the usage row's endpoint ("chat.completions", "tokenize", ...)
        self.request_id = request_id
        self.origin = origin  # api | playground
        self.client_request_id = client_request_id
        self.model = ""  # as the caller named it
        self.spec: ModelSpec | None = None  # the model that serves it, once resolved
        self.tally = RequestTally(on_first_token=self._first_token)
        self.headers: dict[str, str] = {}  # for the answer (x-ratelimit-*)
        self.state = State.OPEN
        self.ending: Ending | None = None
        # Held at admission, given back where the request ends:
        self.release_in_flight: Callable[[], None] | None = None
        self.settle: Callable[[int], Awaitable[None]] | None = None  # rate-limit tokens, given those used
        self.hold: CostHold | None = None  # the money held, given back with the usage record
        self._record = record
        self._gate_error: BaseException | None = None
        self._stream_owns_end = False

    # -- transitions -------------------------------------------------------------------------

    def _move(self, to: State) -> None:
        if to not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.request_id}: {self.state.name} -> {to.name}")
        self.state = to

    def admitted(self) -> None:
        self._move(State.ADMITTED)

    def _first_token(self) -> None:
        if self.state is State.ADMITTED:  # tokens after the end (a stream closing) change nothing
            self._move(State.GENERATING)

    @contextmanager
    def gate(self) -> Iterator[None]:
        """An admission check: an error raised inside refuses the request."""
        try:
            yield
        except BaseException as exc:
            self._gate_error = exc
            raise

    def refuse(self, error: CoderapiError) -> Ending | None:
        """Ends it as refused by a gate whose verdict came late (the key, confirmed after an error)."""
        self._gate_error = error
        return self.end(error)

    def end(self, error: BaseException | None = None) -> Ending | None:
        """Ends the request (once: later calls return None) and records it."""
        if self.state is State.ENDED:
            return None
        at_gate = self._gate_error is not None and self._gate_error is error
        self.ending = ending_for(self.state, error, at_gate=at_gate)
        self._move(State.ENDED)
        release, self.release_in_flight = self.release_in_flight, None
        try:
            if release is not None:
                release()
        finally:
            self._record(self, self.ending)
        return self.ending

    # -- streams -----------------------------------------------------------------------------

    @property
    def stream_owns_end(self) -> bool:
        return self._stream_owns_end

    async def open_stream(self, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        """Waits for the stream's first item (an error before any output is still a plain HTTP
        error); from then on the stream ends the request where it stops, however it stops."""
        metered = self._metered(stream)
        self._stream_owns_end = True
        first = await anext(metered)
        return _prepend(first, metered)

    async def _metered(self, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        ended: BaseException | None = None
        try:
            async for item in stream:
                yield item
        except BaseException as exc:
            ended = exc
            raise
        finally:
            try:
                await stream.aclose()  # first: a backend settles its counts as its stream closes
            finally:
                self.end(ended)


async def _prepend(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()  # closed with its reader: the request ends now, not when collected
