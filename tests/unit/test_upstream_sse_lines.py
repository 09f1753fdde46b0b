"""backends/upstream/client.sse_lines: server-sent-event lines however the bytes arrive (split
anywhere, CRLF or LF, a last line without its end), and no line beyond MAX_SSE_LINE."""

from __future__ import annotations

import asyncio

import pytest

from coderapi.backends.upstream import client
from coderapi.backends.upstream.client import LineTooLong, sse_lines


class _Arrivals:
    """What aiohttp's response.content.iter_any() yields: the bytes as they arrived."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.content = self
        self._pieces = pieces

    async def iter_any(self):
        for piece in self._pieces:
            yield piece


def _lines(pieces: list[bytes]) -> list[bytes]:
    async def collect():
        return [line async for line in sse_lines(_Arrivals(pieces))]
    return asyncio.run(collect())


def test_lines_split_anywhere_come_out_whole():
    pieces = [b"data: {\"a\"", b": 1}\r", b"\n\r\ndata: [DO", b"NE]\n\nevent: x"]
    assert _lines(pieces) == [b'data: {"a": 1}', b"", b"data: [DONE]", b"", b"event: x"]


def test_a_line_past_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(client, "MAX_SSE_LINE", 10)
    with pytest.raises(LineTooLong):
        _lines([b"data: 0123", b"456789"])
    assert _lines([b"data: 012", b"\n"]) == [b"data: 012"]


def test_a_long_line_after_a_short_one_in_the_same_piece_is_refused(monkeypatch):
    monkeypatch.setattr(client, "MAX_SSE_LINE", 10)
    with pytest.raises(LineTooLong):
        _lines([b"ok\n" + b"x" * 20 + b"\n"])
    with pytest.raises(LineTooLong):
        _lines([b"ok\n" + b"x" * 20])
