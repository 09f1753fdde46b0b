"""Remote engine faults a real llama-server will not produce on demand: a replica whose stream
ends cleanly in the middle of a sequence (a proxy cut it, say). Before the first token the next
replica answers; after it, the stream ends with upstream_stream_error instead of passing for done."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from coderapi.engines.base import SamplingParams
from coderapi.engines.remote import RemoteCompletionEngine
from coderapi.errors import UpstreamError
from tests.integration.embedded import embedded_gguf
from tests.servers import serve_in_thread

pytestmark = pytest.mark.model


def cut_replica(tokens: list[int]) -> Starlette:
    """A llama-server look-alike whose /completion sends `tokens`, then ends without its final event."""

    async def completion(request):
        async def events():
            for count, token in enumerate(tokens, start=1):
                yield f"data: {json.dumps({'content': 'x', 'tokens': [token], 'stop': False, 'tokens_predicted': count})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(request):
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/completion", completion, methods=["POST"]), Route("/health", health)])


async def generate(urls: list[str]) -> tuple[list[int], UpstreamError | None, int]:
    engine = RemoteCompletionEngine(urls, embedded_gguf(), api="llama-server", context_length=512, verify_grammars=False)
    await engine.start()
    seen, error = [], None
    try:
        async for event in engine.generate([1, 2, 3], SamplingParams(max_tokens=50, temperature=0)):
            seen.append(event.token_id)
    except UpstreamError as exc:
        error = exc
    finally:
        outstanding = engine.pool.outstanding
        await engine.close()
    return seen, error, outstanding


def test_a_stream_cut_after_the_first_token_is_an_upstream_error():
    with serve_in_thread(cut_replica([87, 88])) as cut:
        seen, error, outstanding = asyncio.run(generate([cut]))
    assert seen == [87, 88] and error is not None and error.code == "upstream_stream_error"
    assert outstanding == 0


def test_a_stream_cut_before_any_token_fails_over_to_the_next_replica():
    with serve_in_thread(cut_replica([])) as empty, serve_in_thread(cut_replica([87, 88])) as cut:
        seen, error, _ = asyncio.run(generate([empty, cut]))
    assert seen == [87, 88]  # the second replica answered (and was then cut: an error, as above)
    assert error is not None and error.code == "upstream_stream_error"
