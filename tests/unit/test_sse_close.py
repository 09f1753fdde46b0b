"""api/sse.py: a streamed answer's generators are closed when the response ends, however it ends,
not when the garbage collector gets to them (the request's row, engine work and slot wait on it)."""

from __future__ import annotations

import asyncio
import gc

from coderapi.api.sse import sse_response
from coderapi.protocol.common import Usage


def test_a_response_cancelled_mid_stream_closes_its_chunks_at_once():
    closed = []

    async def chunks():
        try:
            while True:
                yield Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2)
        finally:
            closed.append("chunks")

    async def main():
        sent = 0
        reader_gone = asyncio.Event()

        async def send(message):  # a client that takes two messages, then nothing more
            nonlocal sent
            sent += 1
            if sent > 2:
                await reader_gone.wait()

        async def receive():
            await asyncio.Event().wait()

        response = sse_response(chunks())
        scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
        task = asyncio.create_task(response(scope, receive, send))
        await asyncio.sleep(0.05)
        gc.disable()  # nothing may be left to a collection
        try:
            task.cancel()  # the request's time limit, say
            await asyncio.gather(task, return_exceptions=True)
            return list(closed)
        finally:
            gc.enable()

    assert asyncio.run(main()) == ["chunks"]
