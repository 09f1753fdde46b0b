"""No request outlives the money it holds (api/request_deadline.py): a stream read slowly, never
stalled long enough to be dropped, is ended at the request time limit, before its hold could lapse,
and billed for what it made."""

from __future__ import annotations

import json
import threading
import time
from contextlib import suppress

import httpx
import pytest

from tests.api.conftest import SERVED_ID, launch
from tests.servers import raw_chat_post, raw_connection

TTL = 4.0
LEASE = 0.5


@pytest.fixture(scope="module")
def short_holds(tmp_path_factory):
    with launch(tmp_path_factory.mktemp("deadline"), reservation_ttl_seconds=TTL, credit_lease_seconds=LEASE) as running:
        yield running


def test_the_time_limit_ends_before_any_hold_can_lapse(short_holds):
    limit = short_holds.app.state.services.settings.request_time_limit_seconds
    assert limit == pytest.approx(TTL * 0.95 - LEASE)


def test_a_slowly_read_stream_ends_at_the_time_limit_billed(short_holds):
    limit = short_holds.app.state.services.settings.request_time_limit_seconds
    before = len(short_holds.usage_rows())
    body = json.dumps({
        "model": SERVED_ID, "messages": [{"role": "user", "content": "repeat: " + "x" * 1900}],
        "stream": True, "max_tokens": 2000, "n": 16,
    }).encode()  # several MB of events: minutes at the pace this client reads
    sock = raw_connection(short_holds.base, receive_buffer=4096)
    received = bytearray()

    def read_slowly() -> None:  # 1 KiB every 20 ms: always reading, never stalled
        with suppress(OSError):
            while chunk := sock.recv(1024):
                received.extend(chunk)
                time.sleep(0.02)

    reader = threading.Thread(target=read_slowly, daemon=True)
    with sock:
        sock.sendall(raw_chat_post(short_holds.key, body))
        started = time.monotonic()
        reader.start()
        rows = short_holds.wait_rows(None, before + 1, timeout=limit + 3)
        ended = time.monotonic()
        assert len(rows) > before, "the slowly read stream ran past its time limit"
        assert received.startswith(b"HTTP/1.1 200") and reader.is_alive()  # still reading what was sent
    assert ended - started > limit * 0.9
    row = rows[-1]
    assert (row.status, row.status_code) == ("cancelled", 499)
    assert 0 < row.completion_tokens < 16 * 1900  # billed for what it made, and stopped early
    with httpx.Client(timeout=10) as client:  # the server serves on
        assert client.get(short_holds.base + "/health").status_code == 200


def test_an_answer_not_begun_by_the_time_limit_is_a_503(short_holds):
    limit = short_holds.app.state.services.settings.request_time_limit_seconds
    before = len(short_holds.usage_rows())
    started = time.monotonic()
    answer = httpx.post(
        short_holds.base + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {short_holds.key}"},
        json={"model": SERVED_ID, "messages": [{"role": "user", "content": "repeat: " + "x" * 1900}],
              "max_tokens": 2000, "n": 16},  # not streamed: seconds more than the limit of work
    )
    assert limit * 0.9 < time.monotonic() - started < limit + 3
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "request_time_limit"
    rows = short_holds.wait_rows(None, before + 1)
    assert len(rows) > before and rows[-1].status == "cancelled"


async def test_a_timeout_error_of_the_app_is_not_taken_for_the_time_limit():
    from coderapi.api.request_deadline import RequestDeadlineMiddleware

    async def app(scope, receive, send):
        raise TimeoutError("an upstream's own timeout")

    async def send(message):
        raise AssertionError("the time limit's answer was sent for another TimeoutError")

    with pytest.raises(TimeoutError, match="upstream's own"):
        await RequestDeadlineMiddleware(app, seconds=60)({"type": "http", "method": "GET", "path": "/"}, None, send)
