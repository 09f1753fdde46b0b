"""An instant OpenAI-compatible upstream for bench/gateway.py: raw asyncio HTTP/1.1 with keep-alive,
answering POST .../chat/completions with a fixed small completion from precomputed bytes, whole
(with usage) or streamed (role chunk, three content chunks, a finish chunk, a usage chunk, [DONE];
chunked transfer encoding). Anything else gets a small JSON 200 (e.g. GET /health, /v1/models).
It does as little as a server can, so that what a gateway adds stands out.

    python bench/instant_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

MODEL = "bench-model"
USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            "connection: keep-alive\r\n\r\n")
    return head.encode() + body


def _whole() -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"},
                         "finish_reason": "stop"}],
            "usage": USAGE}
    return _response("200 OK", "application/json", json.dumps(body).encode())


def _streamed() -> bytes:
    def event(choices: list, usage=None) -> bytes:
        data = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                "model": MODEL, "choices": choices}
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n".encode()

    def delta(content: dict, finish=None) -> list:
        return [{"index": 0, "delta": content, "finish_reason": finish}]

    events = [event(delta({"role": "assistant", "content": ""}))]
    events += [event(delta({"content": word})) for word in ("Hello", " there", "!")]
    events += [event(delta({}, "stop")), event([], USAGE), b"data: [DONE]\n\n"]
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
    return head + chunks + b"0\r\n\r\n"


WHOLE, STREAMED = _whole(), _streamed()
OTHER = _response("200 OK", "application/json", json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())


class Http(asyncio.Protocol):
    """Keep-alive HTTP/1.1: headers, then a Content-Length body, then the canned answer."""

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            path = head.split(" ", 2)[1]
            if path.endswith("/chat/completions"):
                self.transport.write(STREAMED if STREAM_FLAG.search(body) else WHOLE)
            else:
                self.transport.write(OTHER)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
