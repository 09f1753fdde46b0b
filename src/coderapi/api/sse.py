"""Server-sent events framing; a failure mid-stream ends with an error event, then [DONE]."""

from __future__ import annotations

import json
import logging
from typing import AsyncIterator

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from coderapi.errors import CoderapiError, InternalError

log = logging.getLogger("coderapi.sse")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode("utf-8")


async def _frames(chunks: AsyncIterator[BaseModel]) -> AsyncIterator[bytes]:
    try:
        try:
            async for chunk in chunks:
                yield _event(chunk.model_dump_json())
        except CoderapiError as exc:
            yield _event(json.dumps(exc.to_body()))
        except Exception:
            log.exception("stream failed")
            yield _event(json.dumps(InternalError("The server had an error while streaming.").to_body()))
        yield _event("[DONE]")
    finally:
        await chunks.aclose()  # closed with its reader (see ClosingStreamingResponse)


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends, however it ends (done, the client gone, cancelled at
    the request's time limit). Starlette leaves an abandoned body to the garbage collector, and the
    request (its usage row, its engine work, its slot) ends only when the generators behind it
    are closed: a stream whose choices wait on a slow reader (backends/coder/fanout.py) would wait
    for a collection that may not come soon."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def sse_response(chunks: AsyncIterator[BaseModel], headers: dict[str, str] | None = None) -> StreamingResponse:
    return ClosingStreamingResponse(
        _frames(chunks), media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )
