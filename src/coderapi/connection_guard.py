"""Connections that hold the server without making requests are refused or cut off.

uvicorn accepts every connection and reads a request's headers with no deadline: one client that
opens thousands of connections and sends a header line now and then (slowloris) holds that many
file descriptors for as long as it likes, until the process has none left for real clients. The
protocol uvicorn runs here adds, per server:

- a cap on connections open at once, in all and per client address (connection_limits.py); a
  connection over a cap is answered at once (429 `too_many_connections` per address, 503 in all)
  and closed;
- a size cap on each request's line and headers (httptools has none: 100 MB of `a:b` header lines
  took the process to 2.5 GB), answered 431 and closed;
- a deadline for each request's headers, counted from the connection's start or the request's
  first byte; a connection that misses it with no request in flight gets 408 and is closed;
- a deadline for the rest of the request, its body: the ASGI app holds the same deadline
  (api/body_limit.py) and answers 408 where a route reads the body; this one closes a connection
  still sending a body that no route reads;
- a deadline for a client that takes none of an answer's bytes: while the socket's buffers stay
  full that long, the connection is dropped, and the request ends as a hang-up does (cancelled,
  billed for the tokens made) instead of holding its cost reservation and its concurrency slot
  for as long as the client keeps the connection open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from http import HTTPStatus

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coderapi.connection_limits import ConnectionCounts, ConnectionPolicy
from coderapi.errors import CoderapiError, HeadersTooLarge, RequestTimeout

log = logging.getLogger("coderapi.connections")

LINGER_SECONDS = 2.0  # reading and dropping after our own final answer, so the client gets to read it
APP_FIRST_SECONDS = 1.0  # the protocol's body deadline trails the app's, whose 408 is the better answer


def raw_error_response(error: CoderapiError) -> bytes:
    """The whole HTTP/1.1 answer for `error`, written on a connection that will be closed."""
    body = json.dumps(error.to_body()).encode()
    head = [f"HTTP/1.1 {error.status_code} {HTTPStatus(error.status_code).phrase}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    head += [f"{name}: {value}" for name, value in error.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _StopParsing(Exception):
    """Raised from a parser callback to stop httptools mid-request (the answer is already written)."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the caps and deadlines above.

    One timer per connection: the headers' deadline until they are complete, then the body's (a
    second after the app's own, which answers 408 itself when the route reads the body) until the
    request has arrived in full."""

    def __init__(self, *args, policy: ConnectionPolicy, counts: ConnectionCounts, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._policy = policy
        self._counts = counts
        self._counted_as: str | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_headers = False
        self._send_stalled: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._answered_early = False  # this protocol wrote the connection's last answer itself

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = self.client[0] if self.client else ""
        refusal = self._counts.refusal(client, self._policy)
        if refusal is not None:  # closed at once: a flood of refused connections must not linger
            self._answered_early = True
            transport.write(raw_error_response(refusal))
            transport.close()
            return
        self._counts.add(client)
        self._counted_as = client
        self._expect_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._client_reads()
        if self._counted_as is not None:
            self._counts.remove(self._counted_as)
            self._counted_as = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # on a new connection the deadline runs from its start
            self._expect_headers()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)  # with ": " and CRLF
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if not self._answered_early:  # else the parser stopped on our refusal, already answered
            super().send_400_response(msg)

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > self._policy.max_header_bytes:
            self._answer_and_close(HeadersTooLarge(
                f"The request line and headers are larger than this server accepts ({self._policy.max_header_bytes} bytes).",
            ))
            raise _StopParsing  # httptools stops feeding and raises it as a parser error

    def data_received(self, data: bytes) -> None:
        if not self._answered_early:  # else lingering after our own answer: what still comes is dropped
            super().data_received(data)

    def _answer_and_close(self, error: CoderapiError) -> None:
        """Write `error` as the connection's last answer and close it. Closing a socket with unread
        bytes makes the kernel reset it, and a reset can destroy the answer before the client reads
        it, so the write side is shut first and what the client still sends is read and dropped
        for up to LINGER_SECONDS (a lingering close, as nginx does)."""
        self._answered_early = True
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # mid-answer to a pipelined request before it: no room for another
            return
        self.transport.write(raw_error_response(error))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._arm(self._policy.body_timeout_seconds + APP_FIRST_SECONDS)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_stalled is None:
            self._send_stalled = self.loop.call_later(self._policy.send_timeout_seconds, self._drop_stalled_client)

    def resume_writing(self) -> None:
        self._client_reads()
        super().resume_writing()

    def _client_reads(self) -> None:
        if self._send_stalled is not None:
            self._send_stalled.cancel()
            self._send_stalled = None

    def _drop_stalled_client(self) -> None:
        self._send_stalled = None
        log.info("dropping a client that took no bytes for %g s", self._policy.send_timeout_seconds)
        self.transport.abort()  # close() would wait to flush a buffer the client never takes

    def _expect_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._arm(self._policy.header_timeout_seconds)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._deadline_passed, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._answered_early:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm(seconds)  # a request is being answered: the app's own deadlines apply to it
            return
        if self._reading_headers:
            self._answer_and_close(RequestTimeout(
                f"The request's headers did not arrive within {self._policy.header_timeout_seconds:g} s.",
            ))
        else:  # the rest of a body the app answered without reading; nothing more is owed
            self.transport.close()


def guarded_protocol(policy: ConnectionPolicy) -> partial:
    """The `http` protocol class for uvicorn.Config: every connection of the server shares one count."""
    return partial(GuardedHttpProtocol, policy=policy, counts=ConnectionCounts())
