"""A raw asyncio HTTP/1.1 upstream on loopback, in a thread, for tests of the gateway's upstream
client: it counts the connections it accepts and the requests it holds at once, and answers by
the last message's content (health checks get a model list):

  "hold"      waits HOLD_SECONDS, then answers whole (usage included)
  "stream"    streams (chunked): a content chunk, a usage chunk, [DONE]; the body's empty last
              chunk follows TRAILER_DELAY later, as a server that flushes [DONE] first may send it
  "big"       streams one content chunk of BIG_CHARS characters (one SSE line), then as "stream"
  "slow"      streams a content chunk every SLOW_GAP seconds, SLOW_CHUNKS of them, and stops early
              (counting it in `hung_up`) when the gateway closes the connection
  "not json"  answers 200 with an HTML body
  anything else: a whole answer with usage
A test may script an answer of its own: `upstream.scripts[prompt]` (a chat's last message, a
completion's or /tokenize's prompt) is raw HTTP bytes to send, or an async function of the writer
(a misbehaving replica: lying usage, malformed JSON, endless streams, redirects).
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator, Union

from tests.servers import free_port

MODEL = "raw-upstream"
HOLD_SECONDS = 0.5
TRAILER_DELAY = 0.05
BIG_CHARS = 300_000
SLOW_GAP, SLOW_CHUNKS = 0.05, 200
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}

Script = Union[bytes, Callable[[asyncio.StreamWriter], Awaitable[None]]]


class RawUpstream:
    def __init__(self) -> None:
        self.connections = 0  # accepted so far
        self.chat_connections: set[int] = set()  # those that carried a chat request (not a health check)
        self.in_flight = 0
        self.most_in_flight = 0
        self.hung_up = 0  # slow streams the gateway closed before their end
        self.scripts: dict[str, Script] = {}  # prompt -> its answer (see the module's docstring)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                path = head.split(b" ")[1].decode()
                if path.endswith("/chat/completions"):
                    self.chat_connections.add(connection)
                await self.answer(path, body, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, path: str, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script = self.scripts.get(_prompt(body))
        if script is not None:
            return await script(writer) if callable(script) else writer.write(script)
        if not path.endswith("/chat/completions"):
            return self.whole(writer, b'{"object": "list", "data": [{"id": "raw-upstream"}]}')
        prompt = json.loads(body)["messages"][-1]["content"]
        if prompt == "hold":
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(HOLD_SECONDS)
            self.in_flight -= 1
        if prompt == "not json":
            return self.whole(writer, b"<html>upstream proxy error</html>")
        if prompt == "slow":
            return await self.slow(reader, writer)
        if prompt in ("stream", "big"):
            return await self.stream(writer, "x" * BIG_CHARS if prompt == "big" else "streamed")
        message = {"role": "assistant", "content": "whole"}
        self.whole(writer, json.dumps({"id": "r", "object": "chat.completion", "created": 0, "model": MODEL, "usage": USAGE,
                                       "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode())

    @staticmethod
    def whole(writer: asyncio.StreamWriter, content: bytes) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(content), content))

    async def slow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(SLOW_CHUNKS):
            writer.write(_event(_chunk([{"index": 0, "delta": {"content": "tick "}, "finish_reason": None}])))
            await asyncio.sleep(SLOW_GAP)
            if reader.at_eof() or writer.is_closing():  # the gateway hung up: stop generating
                self.hung_up += 1
                raise ConnectionResetError
        writer.write(_event("[DONE]") + b"0\r\n\r\n")

    @staticmethod
    async def stream(writer: asyncio.StreamWriter, text: str) -> None:
        event, chunk = _event, _chunk
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(event(chunk([{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": "stop"}])))
        writer.write(event(chunk([], USAGE)) + event("[DONE]"))
        await writer.drain()
        await asyncio.sleep(TRAILER_DELAY)
        writer.write(b"0\r\n\r\n")


def _prompt(body: bytes) -> str | None:
    """The prompt a script is found by: a chat's last message, else the body's `prompt`."""
    try:
        request = json.loads(body) if body else {}
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    messages = request.get("messages")
    prompt = messages[-1].get("content") if messages else request.get("prompt")
    return prompt if isinstance(prompt, str) else None


def _event(data: dict | str) -> bytes:
    line = b"data: " + (data if isinstance(data, str) else json.dumps(data)).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(line), line)


def _chunk(choices: list, usage=None) -> dict:
    return {"id": "r", "object": "chat.completion.chunk", "created": 0, "model": MODEL, "choices": choices,
            **({"usage": usage} if usage else {})}


@contextmanager
def raw_upstream() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> None:
        stop = loop.create_future()
        upstream.stop = lambda: loop.call_soon_threadsafe(stop.set_result, None)
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", upstream.port)
        started.set()
        async with server:
            await stop
        server.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert started.wait(10), "the raw upstream did not start"
    try:
        yield upstream
    finally:
        upstream.stop()
        thread.join(timeout=10)
        loop.close()


@contextmanager
def passthrough_gateway(data_dir, upstream: RawUpstream, email: str, **spec_fields):
    """coderapi in a thread with MODEL passed through to `upstream`; one user with one inference
    key, no concurrency caps. Yields the Platform, with `user_id` set."""
    from coderapi.app import create_app
    from coderapi.config import ModelSpec, Settings
    from tests.api.conftest import Platform
    from tests.servers import serve_in_thread

    spec = ModelSpec(id=MODEL, backend="upstream", upstream_mode="passthrough",
                     upstream_urls=[upstream.base + "/v1"], **spec_fields)
    settings = Settings(data_dir=data_dir, models=[spec], bootstrap_admin=False,
                        max_concurrent_requests_per_key=0, max_concurrent_requests_per_user=0)
    app = create_app(settings)
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user(email, "correct horse battery")
        return user.id, (await services.keys.create_key(user.id, name="gw"))[1]

    user_id, key = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=10) as base:
        platform = Platform(base, app, key, management_key="")
        platform.user_id = user_id
        yield platform
