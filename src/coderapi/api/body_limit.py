"""Request body size limits per route, enforced as the bytes arrive (413 `request_too_large`).

A declared Content-Length over the limit is answered at once, before one byte of the body is
read. A chunked body (no Content-Length), or one that sends more than it declared, is counted as
it streams in: the moment the count passes the limit, reading stops and the answer is the 413,
whatever the route would have said about the truncated body.

Pure ASGI (not BaseHTTPMiddleware), so streamed answers pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coderapi.api.errors import render
from coderapi.errors import RequestTooLarge

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


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(
        f"The request body is larger than this route accepts ({limit} bytes). "
        "Send a smaller request (fewer or shorter messages, files or tools).",
    )


@dataclass
class _BodyCount:
    limit: int
    received: int = 0
    exceeded: bool = False
    started: bool = False  # the app began its answer before the limit was passed


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self._limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        count = _BodyCount(self._limit_for(scope["path"]))
        declared = _declared_length(scope)
        if declared is not None and declared > count.limit:
            await render(_too_large(count.limit))(scope, receive, send)
            return

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                count.received += len(message.get("body", b""))
                if count.received > count.limit:
                    count.exceeded = True
                    raise _too_large(count.limit)
            return message

        async def guarded_send(message: Message) -> None:
            if count.exceeded and not count.started:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                count.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not count.exceeded or count.started:
                raise
        if count.exceeded and not count.started:
            await render(_too_large(count.limit))(scope, receive, send)
