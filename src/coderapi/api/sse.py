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
        async for chunk in chunks:
            yield _event(chunk.model_dump_json())
    except CoderapiError as exc:
        yield _event(json.dumps(exc.to_body()))
    except Exception:
        log.exception("stream failed")
        yield _event(json.dumps(InternalError("The server had an error while streaming.").to_body()))
    yield _event("[DONE]")


def sse_response(chunks: AsyncIterator[BaseModel], headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(
        _frames(chunks), media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
    )
