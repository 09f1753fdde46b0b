"""Connections that hold the server without making requests (connection_guard.py, api/body_limit.py):
caps per client address and in all, deadlines for headers and bodies, on a real loopback server."""

from __future__ import annotations

import json
import logging
import socket
import time
from contextlib import ExitStack, suppress

import httpx
import pytest

from tests.api.conftest import SERVED_ID, launch
from tests.servers import raw_chat_post, raw_connection

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
SEND_TIMEOUT = 1.5
PER_CLIENT = 4
IN_ALL = 6


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    with launch(
        tmp_path_factory.mktemp("guard"), header_timeout_seconds=HEADER_TIMEOUT, body_timeout_seconds=BODY_TIMEOUT,
        send_timeout_seconds=SEND_TIMEOUT,
        max_connections_per_client=PER_CLIENT, max_connections=IN_ALL,
    ) as running:
        yield running


def _read_all(sock: socket.socket, within: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    sock.settimeout(within)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic()
        data += chunk


def _answer(data: bytes) -> tuple[int, dict, dict]:
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


def _healthy(base: str) -> bool:
    with httpx.Client(timeout=10) as client:  # a connection of its own, closed after
        return client.get(base + "/health").status_code == 200


def test_headers_that_never_finish_get_408_and_the_connection_closes(guarded):
    silent, partial = raw_connection(guarded.base), raw_connection(guarded.base)
    opened = time.monotonic()
    partial.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
    for sock in (silent, partial):
        with sock:
            data, closed = _read_all(sock)
            status, headers, body = _answer(data)
            assert status == 408 and headers["connection"] == "close"
            assert body["error"]["code"] == "request_timeout" and body["error"]["type"] == "invalid_request_error"
            assert HEADER_TIMEOUT * 0.9 <= closed - opened < HEADER_TIMEOUT + 5
    assert _healthy(guarded.base)


def test_slow_but_timely_headers_and_kept_alive_connections_are_served(guarded):
    with raw_connection(guarded.base) as sock:
        for piece in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(HEADER_TIMEOUT / 4)
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        # The connection is kept alive; a second request that stalls in its headers gets the deadline.
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        data, _ = _read_all(sock)
        assert _answer(data)[0] == 408


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"a:b\r\n" * 400_000,  # 2 MB of tiny headers (was 2.5 GB of RSS per 100 MB)
    b"GET /health?" + b"q" * 2_000_000,  # a 2 MB request line
])
def test_oversized_headers_get_431_and_the_connection_closes(guarded, head):
    with raw_connection(guarded.base) as sock:
        with suppress(OSError):  # the server stops reading once past its cap
            sock.sendall(head)
        data, _ = _read_all(sock)
    status, headers, body = _answer(data)
    assert status == 431 and headers["connection"] == "close"
    assert body["error"]["code"] == "headers_too_large"
    assert _healthy(guarded.base)


def test_oversized_headers_behind_a_request_end_the_connection_without_a_stray_answer(guarded, caplog):
    body = json.dumps({
        "model": SERVED_ID, "messages": [{"role": "user", "content": "repeat: " + "x" * 1900}], "stream": True,
        "max_tokens": 2000,
    }).encode()
    data = b""
    with caplog.at_level(logging.ERROR), raw_connection(guarded.base) as sock:
        with suppress(OSError):
            sock.sendall(raw_chat_post(guarded.key, body) + b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"a:b\r\n" * 100_000)
        with suppress(ConnectionResetError):
            data, _ = _read_all(sock)
        time.sleep(0.5)
    assert b"431" not in data  # no answer written into the one before it: the connection just ends
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert _healthy(guarded.base)


def test_a_client_that_leaves_right_after_its_request_is_not_an_error(guarded, caplog):
    body = json.dumps({"model": SERVED_ID, "messages": [{"role": "user", "content": "hi"}]}).encode()
    uvicorn_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root logger
    uvicorn_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(3):
                with raw_connection(guarded.base) as sock:
                    sock.sendall(raw_chat_post(guarded.key, body))
            time.sleep(0.5)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text  # was a traceback each
    assert _healthy(guarded.base)


def test_headers_within_the_cap_are_served(guarded):
    with raw_connection(guarded.base) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nCookie: " + b"c" * 60_000 + b"\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_body_that_trickles_in_gets_408_from_the_route(guarded):
    with raw_connection(guarded.base) as sock:
        sock.sendall(raw_chat_post(guarded.key, b"{", declared_length=1000))
        started = time.monotonic()
        data, closed = _read_all(sock)
    status, headers, body = _answer(data)
    assert status == 408 and headers["connection"] == "close" and "x-request-id" in headers
    assert body["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT * 0.9 <= closed - started < BODY_TIMEOUT + 5
    assert _healthy(guarded.base)


def test_a_body_no_route_reads_is_cut_off_after_its_deadline(guarded):
    with raw_connection(guarded.base) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        data, closed = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 200")  # answered; the body it never read then ends the connection
    assert BODY_TIMEOUT <= closed - started < BODY_TIMEOUT + 6


def test_a_long_stream_outlives_the_deadlines_even_with_a_request_waiting_behind_it(guarded):
    body = json.dumps({
        "model": SERVED_ID, "messages": [{"role": "user", "content": "repeat: " + "x" * 1900}], "stream": True,
        "max_tokens": 2000,
    }).encode()  # the fake engine repeats it, 1,900 tokens at 1 ms or more each
    with raw_connection(guarded.base) as sock:
        # the stream, and behind it a pipelined request that never finishes its headers
        sock.sendall(raw_chat_post(guarded.key, body) + b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        data, closed = _read_all(sock, within=60)
    assert closed - started > HEADER_TIMEOUT * 1.5  # the stream ran past the deadline of the request behind it
    stream, rest = data.split(b"data: [DONE]", 1)
    assert stream.startswith(b"HTTP/1.1 200") and b'"finish_reason":"stop"' in stream
    assert stream.count(b'"content":"x') == 1900
    assert b"HTTP/1.1 408" in rest  # the stalled request behind it is answered once the stream is done


def test_connections_are_capped_per_client_address_and_in_all(guarded):
    with ExitStack() as stack:
        held = [stack.enter_context(raw_connection(guarded.base)) for _ in range(PER_CLIENT)]
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        with raw_connection(guarded.base) as over:
            status, headers, body = _answer(_read_all(over)[0])
        assert status == 429 and body["error"]["code"] == "too_many_connections" and headers["retry-after"] == "1"
        # Another address still gets in, up to the cap in all.
        others = [stack.enter_context(raw_connection(guarded.base, source="127.0.0.2")) for _ in range(IN_ALL - PER_CLIENT)]
        for sock in others:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        with raw_connection(guarded.base, source="127.0.0.3") as over:
            status, headers, body = _answer(_read_all(over)[0])
        assert status == 503 and headers["retry-after"] == "1" and body["error"]["type"] == "overloaded"
    # Closed connections are counted out: the caps leave room again.
    time.sleep(0.2)
    for _ in range(3):
        assert _healthy(guarded.base)


def test_a_client_that_takes_no_bytes_is_dropped_and_its_request_ends_billed(guarded):
    """A stream of megabytes to a client that reads none of it: once the buffers are full and stay
    full for the send deadline, the connection is dropped and the request ends as a hang-up does."""
    before = len(guarded.usage_rows())
    body = json.dumps({
        "model": SERVED_ID, "messages": [{"role": "user", "content": "repeat: " + "x" * 1900}],
        "stream": True, "max_tokens": 2000, "n": 16,
    }).encode()  # ~30,000 events, several MB: more than the socket buffers hold
    with raw_connection(guarded.base, receive_buffer=4096) as sock:
        sock.sendall(raw_chat_post(guarded.key, body))
        rows = guarded.wait_rows(None, before + 1, timeout=60)  # the client reads nothing meanwhile
        assert len(rows) > before, "the stalled request never ended"
        row = rows[-1]
        assert (row.status, row.status_code, row.error_code) == ("cancelled", 499, "client_disconnected")
        assert row.completion_tokens > 0  # billed for the tokens made
        try:  # dropped: what was buffered, then the end (or a reset), not a connection left open
            data, _ = _read_all(sock)
            assert not data.endswith(b"data: [DONE]\r\n\r\n0\r\n\r\n")
        except ConnectionResetError:
            pass
    assert _healthy(guarded.base)
