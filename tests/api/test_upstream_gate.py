"""Pass-through with `upstream_slots`: at most that many requests at the replicas, the rest waiting at
the gateway with users in turn, each user's share of the waiting places bounded, as in Coder mode
(tests/unit/test_remote_engine_gate.py). The replica is a real HTTP server on loopback that holds every
request until released and records the order in which requests reached it."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from coderapi.backends.base import RequestTally
from coderapi.backends.fair_pool import working_for
from coderapi.backends.stats import engine_stats
from coderapi.backends.upstream import UpstreamBackend
from coderapi.config import ModelSpec
from coderapi.errors import Overloaded, RateLimited
from coderapi.protocol.chat import ChatCompletionRequest
from tests.servers import serve_in_thread
from tests.unit.test_remote_engine_gate import until


class HeldReplica:
    """Answers once `release` is set; `seen`: the prompts in the order they arrived."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.release = threading.Event()

    async def chat(self, request: Request):
        body = await request.json()
        self.seen.append(body["messages"][-1]["content"])
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        if not body.get("stream"):
            message = {"role": "assistant", "content": "ok"}
            return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

        async def events():
            delta = {"role": "assistant", "content": "ok"}
            data = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}]}
            yield f"data: {json.dumps(data)}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def app(self) -> Starlette:
        async def models(request: Request):
            return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/v1/models", models)])


@pytest.fixture
def replica():
    held = HeldReplica()
    with serve_in_thread(held.app()) as base:
        held.base = base
        yield held
        held.release.set()


def gateway(replica: HeldReplica, slots: int, max_waiting: int = 8, per_owner: int | None = None) -> UpstreamBackend:
    spec = ModelSpec(id="m", backend="upstream", upstream_mode="passthrough", upstream_urls=[replica.base + "/v1"],
                     upstream_slots=slots, gguf="/nonexistent/tokenizer.gguf")
    return UpstreamBackend(spec, max_waiting=max_waiting, max_waiting_per_owner=per_owner)


async def ask(backend: UpstreamBackend, owner: str, prompt: str, stream: bool = False) -> str:
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": prompt}], stream=stream)
    with working_for(owner):
        answer = await backend.chat(request, RequestTally())
    if not stream:
        return answer.choices[0].message.content
    return "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])


async def test_the_replica_gets_at_most_slots_requests_and_a_freed_place_goes_to_the_other_user(replica):
    backend = gateway(replica, slots=2)
    await backend.start()
    try:
        flood = [asyncio.create_task(ask(backend, "flood", f"f{i}", stream=i % 2 == 1)) for i in range(4)]
        await until(lambda: len(replica.seen) == 2 and backend._queue.gate.waiting == 2)
        other = asyncio.create_task(ask(backend, "other", "o"))
        await until(lambda: backend._queue.gate.waiting == 3)
        await asyncio.sleep(0.1)
        assert replica.seen == ["f0", "f1"]  # the rest wait at the gateway, not at the replica
        stats = engine_stats(backend)  # what /metrics reports as running and waiting
        assert (stats.running, stats.waiting) == (2, 3)
        replica.release.set()
        assert await asyncio.wait_for(asyncio.gather(*flood, other), 10) == ["ok"] * 5
        assert replica.seen[2] == "o"  # first come, first served, it would have been f2
        assert backend._queue.capacity.held == 0 and backend._queue.gate.held == 0  # every place given back
        assert (engine_stats(backend).running, engine_stats(backend).waiting) == (0, 0)
    finally:
        await backend.close()


async def test_a_users_share_of_the_waiting_places_and_the_whole_queue_are_bounded(replica):
    backend = gateway(replica, slots=1, max_waiting=3, per_owner=1)
    await backend.start()
    try:
        held = [asyncio.create_task(ask(backend, "flood", f"f{i}")) for i in range(2)]  # 1 sent, 1 waiting
        await until(lambda: backend._queue.capacity.held == 2)
        with pytest.raises(RateLimited):  # its share: the slot and one waiting place
            await ask(backend, "flood", "f2", stream=True)
        others = [asyncio.create_task(ask(backend, f"user{i}", f"u{i}")) for i in range(2)]
        await until(lambda: backend._queue.capacity.held == 4)
        with pytest.raises(Overloaded):  # 1 + 3 places in all
            await ask(backend, "late", "l")
        replica.release.set()
        assert await asyncio.wait_for(asyncio.gather(*held, *others), 10) == ["ok"] * 4
    finally:
        await backend.close()


async def test_a_stream_closed_while_it_waits_gives_its_place_back(replica):
    backend = gateway(replica, slots=1)
    await backend.start()
    try:
        first = asyncio.create_task(ask(backend, "a", "first"))
        await until(lambda: replica.seen == ["first"])
        request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "w"}], stream=True)
        with working_for("b"):
            stream = await backend.chat(request, RequestTally())
        waiting = asyncio.create_task(anext(stream))
        await until(lambda: backend._queue.gate.waiting == 1)
        waiting.cancel()  # the client left while queued
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await stream.aclose()
        assert backend._queue.gate.waiting == 0 and backend._queue.capacity.held == 1
        replica.release.set()
        assert await asyncio.wait_for(first, 10) == "ok"
        assert backend._queue.capacity.held == 0 and replica.seen == ["first"]
    finally:
        await backend.close()
