"""A replica's server-sent-event stream as lines, each at most MAX_SSE_LINE bytes.

httpx's `aiter_lines` has no limit: a replica that sends hundreds of megabytes without a newline
would have them all held in memory as one line. Here a line past the limit ends the stream as a
protocol error. The bytes are read raw (the engine asks for `accept-encoding: identity`), so what
is held is what was received: no compressed body can grow into a larger one here.
"""

from __future__ import annotations

from typing import AsyncIterator

from coderapi.engines.remote.errors import ProtocolError

MAX_SSE_LINE = 16 * 1024 * 1024  # bytes of one server-sent-event line at most (a hostile replica)


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of `chunks` as they arrive, without their line ends."""
    pending = bytearray()
    async for data in chunks:
        pending += data
        if b"\n" in data:  # only the new bytes are searched: a long line costs no rescans
            *lines, rest = pending.split(b"\n")
            pending = bytearray(rest)
            for line in lines:
                _check_length(line)
                yield bytes(line.rstrip(b"\r"))
        _check_length(pending)
    if pending:
        yield bytes(pending.rstrip(b"\r"))


def _check_length(line: bytes | bytearray) -> None:
    if len(line) > MAX_SSE_LINE:
        raise ProtocolError(f"a stream line of more than {MAX_SSE_LINE} bytes")
