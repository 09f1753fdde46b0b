"""Connections that hold the server without making requests are refused or cut off.

uvicorn accepts every connection and reads a request's headers with no deadline: one client that
opens thousands of connections and sends a header line now and then (slowloris) holds that many
file descriptors for as long as it likes, until the process has none left for real clients. The
protocol uvicorn runs here adds, per server:

- a cap on connections open at once, in all and per client address; a connection over a cap is
  answered at once (429 `too_many_connections` per address, 503 in all) and closed;
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
import resource
from dataclasses import dataclass, field, replace
from functools import partial

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coderapi.errors import CoderapiError, Overloaded, RequestTimeout, TooManyConnections

log = logging.getLogger("coderapi.connections")

APP_FIRST_SECONDS = 1.0  # the protocol's body deadline trails the app's, whose 408 is the better answer
FD_HEADROOM = 256  # descriptors beyond max_connections: the database, models, logs, upstream sockets


@dataclass(frozen=True)
class ConnectionPolicy:
    header_timeout_seconds: float
    body_timeout_seconds: float
    send_timeout_seconds: float
    max_connections: int  # 0: no cap
    max_connections_per_client: int  # 0: no cap


@dataclass
class ConnectionCounts:
    """Connections open now, in all and per client address (one per server, shared by its connections)."""

    total: int = 0
    by_client: dict[str, int] = field(default_factory=dict)

    def refusal(self, client: str, policy: ConnectionPolicy) -> CoderapiError | None:
        if policy.max_connections and self.total >= policy.max_connections:
            return Overloaded("The server has as many connections open as it takes; try again shortly.")
        if policy.max_connections_per_client and self.by_client.get(client, 0) >= policy.max_connections_per_client:
            return TooManyConnections(
                f"Too many connections open from your address (at most {policy.max_connections_per_client}). "
                "Reuse connections (HTTP keep-alive) or close idle ones.",
            )
        return None

    def add(self, client: str) -> None:
        self.total += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1

    def remove(self, client: str) -> None:
        self.total -= 1
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


def raw_error_response(error: CoderapiError) -> bytes:
    """The whole HTTP/1.1 answer for `error`, written on a connection that will be closed."""
    body = json.dumps(error.to_body()).encode()
    head = [f"HTTP/1.1 {error.status_code} {_REASONS[error.status_code]}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    head += [f"{name}: {value}" for name, value in error.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


_REASONS = {408: "Request Timeout", 429: "Too Many Requests", 503: "Service Unavailable"}


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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        client = self.client[0] if self.client else ""
        refusal = self._counts.refusal(client, self._policy)
        if refusal is not None:
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
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm(seconds)  # a request is being answered: the app's own deadlines apply to it
            return
        if self._reading_headers:
            self.transport.write(raw_error_response(RequestTimeout(
                f"The request's headers did not arrive within {self._policy.header_timeout_seconds:g} s.",
            )))
        # else: the rest of a body the app answered without reading; nothing more is owed
        self.transport.close()


def guarded_protocol(policy: ConnectionPolicy) -> partial:
    """The `http` protocol class for uvicorn.Config: every connection of the server shares one count."""
    return partial(GuardedHttpProtocol, policy=policy, counts=ConnectionCounts())


def fit_open_files_limit(policy: ConnectionPolicy) -> ConnectionPolicy:
    """Lift the soft limit on open files so `max_connections` fits (many systems start services at
    1,024); where the hard limit is too low for it, lower the cap to what fits, with a warning, so the
    cap still answers 503 before the process runs out of descriptors."""
    if not policy.max_connections:
        return policy
    needed = policy.max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return policy
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    except (OSError, ValueError) as exc:
        log.warning("could not raise the open files limit from %d: %s", soft, exc)
    if soft >= needed:
        return policy
    fitted = max(1, soft - FD_HEADROOM)
    log.warning(
        "open files are limited to %d: max_connections lowered from %d to %d (raise the hard limit, "
        "ulimit -Hn, to keep it)", soft, policy.max_connections, fitted,
    )
    return replace(policy, max_connections=fitted)
