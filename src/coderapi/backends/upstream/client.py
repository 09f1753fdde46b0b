"""The HTTP client that forwards requests to the upstream replicas: one aiohttp session per backend.

Not httpx: its connection pool checks the socket of every pooled connection on each request
(encode/httpcore#928), which was about half of a pass-through gateway's CPU (docs/gateway-bench.md).
aiohttp's pool learns of a closed connection from the event loop instead. Health checks stay on
httpx (engines/remote/pool.py): a few requests a minute.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import aiohttp

from coderapi.engines.remote.lines import MAX_SSE_LINE  # one limit for both ways to a replica

# What a broken or unreachable replica raises: refused or reset connections, a server that hung up,
# a body cut short, a malformed answer, a read that timed out.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)

CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to a replica
READ_TIMEOUT = 600.0  # seconds without a byte from the replica (a long prompt's prefill included)
POOL_TIMEOUT = 600.0  # seconds to wait for a free connection when a replica has them all in use
# Idle connections are closed before the servers close theirs (uvicorn, so vLLM and SGLang, and
# llama-server all close after 5 s): a request never goes out on a connection the server is closing.
KEEPALIVE_SECONDS = 4.0
MAX_BODY = 16 * 1024 * 1024  # bytes of a whole (not streamed) answer at most, like a stream line
MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer read (it is only logged, cut to 2,000 characters)
TRAILER_WAIT = 0.5  # seconds for a stream's last (empty) chunk after [DONE], to keep its connection


class LineTooLong(Exception):
    """A stream line past MAX_SSE_LINE: the replica is not sending server-sent events."""


class BodyTooLarge(Exception):
    """A whole answer past its limit (MAX_BODY): no model's answer to one request is that big."""


class UpstreamClient:
    """POSTs JSON bodies to the replicas; the session is opened on the serving event loop, at start
    or at the first request, and holds keep-alive connections, `per_replica` per host at most.
    Replicas are reached directly: HTTP(S)_PROXY and .netrc are not read (`trust_env=False`)."""

    def __init__(self, api_key: str | None, per_replica: int) -> None:
        self._headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._per_replica = per_replica
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._per_replica, keepalive_timeout=KEEPALIVE_SECONDS)
            timeout = aiohttp.ClientTimeout(total=None, connect=POOL_TIMEOUT, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self._headers, trust_env=False, raise_for_status=False,
            )
        return self._session

    async def start(self) -> None:
        self._open()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: bytes) -> aiohttp.ClientResponse:
        """The replica's answer once its headers are in; the caller reads it and releases it."""
        return await self._open().post(url, data=body, allow_redirects=False)


async def read_whole(response: aiohttp.ClientResponse, limit: int | None = None) -> bytes:
    """The whole body, `limit` (else MAX_BODY) bytes at most: BodyTooLarge past it, the connection
    closed (a hostile replica's endless body is never held). The connection goes back to the pool
    (or is closed if the body was cut short)."""
    limit = MAX_BODY if limit is None else limit
    if (response.content_length or 0) > limit:
        response.close()
        raise BodyTooLarge(f"an answer of {response.content_length} bytes (at most {limit} are read)")
    body = bytearray()
    try:
        async for data in response.content.iter_any():
            body += data
            if len(body) > limit:
                response.close()
                raise BodyTooLarge(f"an answer of more than {limit} bytes")
    finally:
        response.release()
    return bytes(body)


async def sse_lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The stream's lines, as they arrive, without their line ends. No line-length limit but
    MAX_SSE_LINE (aiohttp's own readline refuses lines past 128 KiB: a big tool-call chunk)."""
    pending = bytearray()
    async for data in response.content.iter_any():
        pending += data
        if b"\n" in data:
            *lines, rest = pending.split(b"\n")
            pending = bytearray(rest)
            for line in lines:
                if len(line) > MAX_SSE_LINE:
                    raise LineTooLong(f"a stream line of more than {MAX_SSE_LINE} bytes")
                yield bytes(line.rstrip(b"\r"))
        if len(pending) > MAX_SSE_LINE:
            raise LineTooLong(f"a stream line of more than {MAX_SSE_LINE} bytes")
    if pending:
        yield bytes(pending.rstrip(b"\r"))


async def await_trailer(response: aiohttp.ClientResponse) -> None:
    """After [DONE], the chunked body's empty last chunk may trail by a moment: read it, so the
    connection can go back to the pool rather than be closed."""
    if response.content.at_eof():
        return
    try:
        await asyncio.wait_for(response.content.read(4096), TRAILER_WAIT)
    except TRANSPORT_ERRORS:
        pass  # release_or_close closes it


def release_or_close(response: aiohttp.ClientResponse) -> None:
    """A stream read to its end goes back to the pool; one cut short (the client hung up, the
    replica failed) is closed, so the replica stops generating for nobody."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()
