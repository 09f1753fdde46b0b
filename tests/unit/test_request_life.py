"""RequestLife: the state machine of one request, without I/O (a list stands in for the recorder)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.errors import (
    AuthenticationFailed,
    CoderapiError,
    ContextLengthExceeded,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from coderapi.services.account_types import Principal
from coderapi.services.request_life import (
    BACKEND_REFUSALS,
    InvalidTransition,
    RequestLife,
    State,
    Status,
    ending_for,
)

PRINCIPAL = Principal(
    user_id=1, email="a@example.com", role="user", key_id=7, key_prefix="sk-abcde", key_kind="inference",
    scopes=("model:chat",), rpm_limit=None, tpm_limit=None,
)


def _error(kind: type[CoderapiError]) -> CoderapiError:
    if kind is RateLimited:
        return RateLimited("slow down", retry_after=1)
    return kind("no")


ERROR_KINDS = [
    AuthenticationFailed, PermissionDenied, QuotaExceeded, RateLimited, Overloaded, ServiceUnavailable,
    InvalidRequest, ContextLengthExceeded, ModelNotFound, UpstreamError, InternalError,
]
errors = st.sampled_from(ERROR_KINDS).map(_error)


class Recorder:
    """Stands in for Metering.record: keeps what was recorded, and counts in-flight releases."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Status, int, str | None]] = []
        self.released = 0

    def record(self, life: RequestLife, ending) -> None:
        self.records.append((life.request_id, ending.status, ending.status_code, ending.error_code))

    def life(self) -> RequestLife:
        life = RequestLife(PRINCIPAL, "chat.completions", "req-1", self.record)
        life.release_in_flight = self.release
        return life

    def release(self) -> None:
        self.released += 1


def test_success_goes_open_admitted_generating_ended_and_is_recorded_once():
    recorder = Recorder()
    life = recorder.life()
    assert life.state is State.OPEN
    life.admitted()
    assert life.state is State.ADMITTED
    life.tally.count_token()  # the backend's first token moves it on
    assert life.state is State.GENERATING
    life.tally.count_token(0.01)
    assert life.state is State.GENERATING and life.tally.completion_tokens == 2
    ending = life.end()
    assert life.state is State.ENDED and ending.status is Status.SUCCESS and ending.status_code == 200
    assert recorder.records == [("req-1", Status.SUCCESS, 200, None)] and recorder.released == 1


def test_an_error_from_an_admission_gate_is_a_refusal_whatever_its_status():
    for error in (AuthenticationFailed("gone"), RateLimited("slow", retry_after=1), QuotaExceeded("broke")):
        recorder = Recorder()
        life = recorder.life()
        with pytest.raises(CoderapiError):
            with life.gate():
                raise error
        life.end(error)
        assert recorder.records == [("req-1", Status.REFUSED, error.status_code, error.code)]


def test_an_error_reading_the_request_before_admission_is_an_error_not_a_refusal():
    recorder = Recorder()
    life = recorder.life()
    with life.gate():
        pass  # the key passed
    life.end(InvalidRequest("temperature must be at most 2", param="temperature"))
    assert recorder.records == [("req-1", Status.ERROR, 400, None)]


def test_a_backend_refusal_before_the_first_token_is_refused_and_after_it_an_error():
    before = Recorder()
    life = before.life()
    life.admitted()
    life.end(Overloaded("queue full"))
    assert before.records == [("req-1", Status.REFUSED, 503, "overloaded")]

    midway = Recorder()
    life = midway.life()
    life.admitted()
    life.tally.count_token()
    life.end(Overloaded("queue full"))  # the same error, once generating: an error
    assert midway.records == [("req-1", Status.ERROR, 503, "overloaded")]


def test_cancelled_in_any_state_is_cancelled_and_charged():
    for steps in ([], ["admitted"], ["admitted", "token"]):
        recorder = Recorder()
        life = recorder.life()
        if "admitted" in steps:
            life.admitted()
        if "token" in steps:
            life.tally.count_token()
        ending = life.end(asyncio.CancelledError())
        assert ending.status is Status.CANCELLED and ending.status.charged
        assert recorder.records == [("req-1", Status.CANCELLED, 499, "client_disconnected")]


def test_an_untyped_exception_is_an_internal_error():
    recorder = Recorder()
    life = recorder.life()
    life.admitted()
    life.end(KeyError("bug"))
    assert recorder.records == [("req-1", Status.ERROR, 500, "internal_error")]


def test_refuse_ends_it_as_refused_even_for_an_error_raised_outside_a_gate():
    recorder = Recorder()
    life = recorder.life()
    life.refuse(AuthenticationFailed("the key was deleted"))
    assert recorder.records == [("req-1", Status.REFUSED, 401, "invalid_api_key")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), errors, st.just(asyncio.CancelledError())), min_size=1, max_size=6))
def test_ended_and_recorded_once_and_released_once_however_often_end_is_called(ends):
    recorder = Recorder()
    life = recorder.life()
    life.admitted()
    first = life.end(ends[0])
    for later in ends[1:]:
        assert life.end(later) is None
    assert len(recorder.records) == 1 and recorder.released == 1
    assert recorder.records[0][1] is first.status and life.ending is first


@settings(max_examples=60, deadline=None)
@given(errors)
def test_where_it_ended_decides_refused(error):
    assert ending_for(State.OPEN, error, at_gate=True).status is Status.REFUSED
    assert ending_for(State.OPEN, error, at_gate=False).status is Status.ERROR
    refused_by_backend = isinstance(error, BACKEND_REFUSALS)
    assert (ending_for(State.ADMITTED, error).status is Status.REFUSED) == refused_by_backend
    assert ending_for(State.GENERATING, error).status is Status.ERROR
    for state in (State.OPEN, State.ADMITTED, State.GENERATING):
        ending = ending_for(state, error)
        assert (ending.status_code, ending.error_code) == (error.status_code, error.code)
        assert not ending.status.charged


def test_transitions_outside_the_table_are_refused():
    life = Recorder().life()
    life.admitted()
    with pytest.raises(InvalidTransition):
        life.admitted()
    life.end()
    with pytest.raises(InvalidTransition):
        life.admitted()
    life.tally.count_token()  # a token after the end (a stream closing) changes nothing
    assert life.state is State.ENDED


async def _chunks(n: int, fail_after: int | None = None, tally=None):
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise UpstreamError("the replica died")
        if tally is not None:
            tally.count_token()
        yield i


async def test_a_stream_read_to_its_end_ends_the_request_once_as_a_success():
    recorder = Recorder()
    life = recorder.life()
    life.admitted()
    stream = await life.open_stream(_chunks(3, tally=life.tally))
    assert life.state is State.GENERATING and recorder.records == []
    assert [c async for c in stream] == [0, 1, 2]
    assert recorder.records == [("req-1", Status.SUCCESS, 200, None)] and recorder.released == 1


async def test_a_stream_failing_midway_is_an_error_and_one_closed_early_is_cancelled():
    failing = Recorder()
    life = failing.life()
    life.admitted()
    stream = await life.open_stream(_chunks(5, fail_after=2, tally=life.tally))
    with pytest.raises(UpstreamError):
        async for _ in stream:
            pass
    assert failing.records == [("req-1", Status.ERROR, 502, "upstream_error")]

    left = Recorder()
    life = left.life()
    life.admitted()
    stream = await life.open_stream(_chunks(5, tally=life.tally))
    assert await anext(stream) == 0
    await stream.aclose()  # the client went away: the reader closes the stream
    assert left.records == [("req-1", Status.CANCELLED, 499, "client_disconnected")] and left.released == 1


async def test_a_stream_refused_before_its_first_item_raises_and_is_refused():
    async def refused():
        raise Overloaded("queue full")
        yield  # pragma: no cover

    recorder = Recorder()
    life = recorder.life()
    life.admitted()
    with pytest.raises(Overloaded):
        await life.open_stream(refused())
    assert recorder.records == [("req-1", Status.REFUSED, 503, "overloaded")] and life.stream_owns_end
