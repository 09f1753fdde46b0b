"""Request body limits, enforced as the bytes arrive: a size per route (413 `request_too_large`)
and a deadline for the whole body (408 `request_timeout`), so a client that trickles a body in
cannot hold a request open.

A declared Content-Length over the limit is answered at once, before one byte of the body is
read. A chunked body (no Content-Length), or one that sends more than it declared, is counted as
it streams in: the moment the count passes the limit, reading stops and the answer is the 413,
whatever the route would have said about the truncated body.

Pure ASGI (not BaseHTTPMiddleware), so streamed answers pass through untouched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coderapi.api.errors import render
from coderapi.errors import CoderapiError, RequestTimeout, RequestTooLarge

# Routes that take prompts: chat, completions and the tokenizer (with or without /v1).
INFERENCE_PATHS = frozenset(
    {"/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/tokenize", "/detokenize"}
)


def limit_by_route(inference_bytes: int, other_bytes: int) -> Callable[[str], int]:
    def limit(path: str) -> int:
        return inference_bytes if path.rstrip("/") in INFERENCE_PATHS else other_bytes

    return limit


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_slow(seconds: float) -> RequestTimeout:
    return RequestTimeout(f"The request body did not arrive within {seconds:g} s of its headers.")


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than this route accepts ({limit} bytes). "
        "Send a smaller request (fewer or shorter messages, files or tools).",
    )


@dataclass
class _BodyCount:
    limit: int
    deadline: float  # loop time by which the whole body must have arrived
    received: int = 0
    complete: bool = False
    refusal: CoderapiError | None = None  # the body was too large or too slow: the answer is this error
    started: bool = False  # the app began its answer before the body was refused


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int], timeout_seconds: float) -> None:
        self.app = app
        self._limit_for = limit_for
        self._timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        count = _BodyCount(self._limit_for(scope["path"]), loop.time() + self._timeout_seconds)
        declared = _declared_length(scope)
        if declared is not None and declared > count.limit:
            await render(_too_large(count.limit))(scope, receive, send)
            return

        async def counted_receive() -> Message:
            if count.complete:  # after the body only a disconnect comes, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout_at(count.deadline):
                    message = await receive()
            except TimeoutError:
                count.refusal = _too_slow(self._timeout_seconds)
                raise count.refusal from None
            if message["type"] == "http.request":
                count.received += len(message.get("body", b""))
                count.complete = not message.get("more_body", False)
                if count.received > count.limit:
                    count.refusal = _too_large(count.limit)
                    raise count.refusal
            return message

        async def guarded_send(message: Message) -> None:
            if count.refusal is not None and not count.started:
                return  # the app's answer to a cut-off body is replaced by the refusal below
            if message["type"] == "http.response.start":
                count.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if count.refusal is None or count.started:
                raise
        if count.refusal is not None and not count.started:
            # The rest of the body is not read: the connection cannot carry another request.
            count.refusal.headers["connection"] = "close"
            await render(count.refusal)(scope, receive, send)
