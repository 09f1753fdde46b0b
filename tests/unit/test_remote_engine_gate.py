"""The remote engine with `slots`: at most that many requests at the replicas, the rest waiting at the
gateway with owners in turn, and each owner's share of the waiting places. Replicas are
httpx.MockTransport handlers: no sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from coderapi.engines.base import SamplingParams
from coderapi.engines.remote import RemoteCompletionEngine
from coderapi.errors import RateLimited
from tests.unit.test_remote_hostile_upstream import LoadedByteTokenizer, chunk, sse


class SlowReplica:
    """Answers each completion once `release` is set; records the prompts in the order they arrive."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.release = asyncio.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": [], "default_generation_settings": {"n_ctx": 4096}})
        self.seen.append(json.loads(request.content)["prompt"][0])

        async def body():
            await self.release.wait()
            yield sse(chunk("a", [97]), chunk("", finish="stop"), b"[DONE]")

        return httpx.Response(200, content=body())


async def engine_with(replica: SlowReplica, **gate) -> RemoteCompletionEngine:
    engine = RemoteCompletionEngine(["http://a:1/v1"], Path("family.gguf"), model="m", context_length=4096,
                                    verify_grammars=False, transport=httpx.MockTransport(replica), **gate)
    engine.tokenizer = LoadedByteTokenizer()
    await engine.start()
    return engine


async def ask(engine: RemoteCompletionEngine, first_id: int, owner: str) -> int:
    events = [e async for e in engine.generate([first_id, 2, 3], SamplingParams(max_tokens=4, owner=owner))]
    return len(events)


async def until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_the_replicas_get_at_most_slots_requests_and_a_freed_place_goes_to_the_other_owner():
    replica = SlowReplica()
    engine = await engine_with(replica, slots=2)
    tasks = [asyncio.create_task(ask(engine, 10 + i, "flood")) for i in range(4)]
    await until(lambda: len(replica.seen) == 2 and engine.stats().waiting == 2)
    tasks.append(asyncio.create_task(ask(engine, 50, "other")))
    await until(lambda: engine.stats().waiting == 3)
    assert replica.seen == [10, 11]  # the others wait at the gateway, not at the replica
    replica.release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [2] * 5
    assert replica.seen[2] == 50  # first come, first served, it would have been 12
    await engine.close()


async def test_one_owner_holds_at_most_its_share_of_the_waiting_places():
    replica = SlowReplica()
    engine = await engine_with(replica, slots=1, max_waiting=4, max_waiting_per_owner=1)
    tasks = [asyncio.create_task(ask(engine, 10 + i, "flood")) for i in range(2)]
    await until(lambda: engine.stats().waiting == 1)
    with pytest.raises(RateLimited) as refused:
        await ask(engine, 12, "flood")
    assert refused.value.code == "concurrency_limit_exceeded"
    tasks.append(asyncio.create_task(ask(engine, 50, "other")))
    await until(lambda: engine.stats().waiting == 2)
    replica.release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [2, 2, 2]
    await engine.close()


async def test_without_slots_every_request_goes_to_the_replicas_at_once():
    replica = SlowReplica()
    engine = await engine_with(replica)
    tasks = [asyncio.create_task(ask(engine, 10 + i, "flood")) for i in range(5)]
    await until(lambda: len(replica.seen) == 5)
    assert engine.stats().waiting == 0
    replica.release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await engine.close()


@pytest.mark.parametrize("slots", [0, 1])
async def test_closing_a_stream_closes_the_replicas_at_once_and_frees_its_place(slots):
    closed = asyncio.Event()

    def replica(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": [], "default_generation_settings": {"n_ctx": 4096}})

        class Generating(httpx.AsyncByteStream):  # a replica still generating, until its response is closed
            async def __aiter__(self):
                yield sse(chunk("a", [97]))
                await asyncio.Event().wait()

            async def aclose(self) -> None:
                closed.set()

        return httpx.Response(200, stream=Generating())

    engine = RemoteCompletionEngine(["http://a:1/v1"], Path("family.gguf"), model="m", context_length=4096,
                                    verify_grammars=False, transport=httpx.MockTransport(replica), slots=slots)
    engine.tokenizer = LoadedByteTokenizer()
    await engine.start()
    stream = engine.generate([1, 2, 3], SamplingParams(max_tokens=50, owner="a"))
    await stream.__anext__()
    await stream.aclose()
    assert closed.is_set()  # now, not when the generators are collected
    if slots:
        assert engine._queue.gate.held == 0 and engine._queue.capacity.held == 0
    await engine.close()
