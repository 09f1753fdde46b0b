"""`upstream_slots` counted across gateways on a real redis-server (engines/shared_slots.py, SharedGate in
engines/fair_gate.py): never more places held than the limit, a stopped gateway's places and queue entry
back once they expire, a long request's place kept by renewal, a cancelled waiter leaving nothing behind,
a freed place to the gateway that waited longer (not to its own gateway's next request), each lease a
gateway wins to its user holding the fewest, Redis down open or closed (and silent); and two
pass-through gateways in front of one replica sending it no more than the limit between them."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from coderapi.backends.stats import engine_stats
from coderapi.backends.upstream import UpstreamBackend
from coderapi.config import ModelSpec
from coderapi.engines.fair_gate import GatewayQueue
from coderapi.engines.shared_slots import SharedSlots
from coderapi.errors import ServiceUnavailable
from tests.api.test_upstream_gate import HeldReplica, ask, replica  # noqa: F401 (fixture)
from tests.integration.test_redis_limits import REDIS_URL, _reachable
from tests.conftest import require_or_skip
from tests.servers import free_port
from tests.unit.test_remote_engine_gate import until

pytestmark = pytest.mark.redis


@pytest.fixture
def key():
    require_or_skip(_reachable(REDIS_URL), "CODERAPI_TEST_REDIS_URL is not set or Redis is not reachable")
    return f"test:slots:{uuid.uuid4().hex}"


def slots(key: str, limit: int, **kwargs) -> SharedSlots:
    return SharedSlots(REDIS_URL, key, limit, **kwargs)


async def live_leases(key: str) -> int:
    """Leases in Redis, and requests in its queue (nothing is left in the queue in these tests)."""
    probe = slots(key, 1)
    try:
        assert await probe._client.zcard(f"{key}:queue") == 0
        return await probe._client.zcard(key)
    finally:
        await probe.close()


async def held_place(queue: GatewayQueue, owner: str, name: str, order: list[str], release: dict) -> None:
    """`owner`'s request `name`: notes its entry in `order`, holds its place until `release[name]` is set."""
    async with queue.place(owner):
        order.append(name)
        await release[name].wait()


async def test_gateways_on_one_redis_never_hold_more_places_than_the_limit(key):
    gateways = [slots(key, 3), slots(key, 3)]
    inside, most = 0, 0

    async def request(gateway: SharedSlots) -> None:
        nonlocal inside, most
        async with gateway.place():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(random.uniform(0.005, 0.03))
            inside -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(request(gateways[i % 2]) for i in range(24))), 20)
        assert most == 3  # reached, never passed
        assert await live_leases(key) == 0
    finally:
        for gateway in gateways:
            await gateway.close()


async def test_a_stopped_gateways_places_come_back_when_its_leases_expire(key):
    stopped, other = slots(key, 2, lease_seconds=0.6), slots(key, 2)
    try:
        held = [stopped.place(), stopped.place()]
        for place in held:
            await place.__aenter__()
        stopped._renewer.cancel()  # the gateway stops: nothing renews or gives back its leases
        started = time.monotonic()
        async with other.place():
            waited = time.monotonic() - started
        assert 0.3 < waited < 5
    finally:
        await other.close()
        await stopped._client.aclose()


async def test_a_freed_place_goes_to_the_request_that_waited_longest_across_gateways(key):
    a, b = slots(key, 1), slots(key, 1)
    order = []

    async def request(gateway: SharedSlots, name: str) -> None:
        async with gateway.place():
            order.append(name)
            await asyncio.sleep(0.05)

    try:
        first = a.place()
        await first.__aenter__()
        on_b = asyncio.create_task(request(b, "b"))
        await until(lambda: b.waiting == 1)
        await asyncio.sleep(0.05)  # asking Redis, in its queue
        on_a = asyncio.create_task(request(a, "a"))
        await until(lambda: a.waiting == 1)
        await asyncio.sleep(0.05)
        await first.__aexit__(None, None, None)  # a's own waiter hears of it first, and still waits its turn
        await asyncio.wait_for(asyncio.gather(on_b, on_a), 5)
        assert order == ["b", "a"]
    finally:
        await a.close()
        await b.close()


async def test_a_gateway_gives_each_lease_it_wins_to_the_user_holding_the_fewest(key):
    queue = GatewayQueue(2, max_waiting=16, shared=slots(key, 2))
    release = {name: asyncio.Event() for name in ("f1", "f2", "f3", "f4", "f5", "victim")}
    order = []

    def request(owner: str, name: str):
        return held_place(queue, owner, name, order, release)

    try:
        tasks = [asyncio.create_task(request("flood", name)) for name in ("f1", "f2")]
        await until(lambda: order == ["f1", "f2"])
        for name in ("f3", "f4", "f5"):
            tasks.append(asyncio.create_task(request("flood", name)))
            await until(lambda: queue.waiting == len(tasks) - 2)
        tasks.append(asyncio.create_task(request("victim", "victim")))
        await until(lambda: queue.waiting == 4)
        for entered, name in enumerate(("f1", "f2", "victim", "f3", "f4", "f5"), start=3):
            release[name].set()  # frees a place for the next to enter
            await until(lambda: len(order) >= min(entered, 6))
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert order == ["f1", "f2", "victim", "f3", "f4", "f5"]  # first come would have put the victim last
        await asyncio.sleep(0.05)  # the last leases go back in the background
        assert queue.waiting == 0 and queue.gate.held == 0 and await live_leases(key) == 0
    finally:
        await queue.close()


async def test_a_gateway_gives_a_freed_place_back_to_redis_not_to_its_own_next_request(key):
    a, b = (GatewayQueue(1, max_waiting=8, shared=slots(key, 1)) for _ in range(2))
    release = {name: asyncio.Event() for name in ("a1", "b1", "a2")}
    order = []

    def request(queue: GatewayQueue, name: str):
        return held_place(queue, name, name, order, release)

    try:
        tasks = [asyncio.create_task(request(a, "a1"))]
        await until(lambda: order == ["a1"])
        tasks.append(asyncio.create_task(request(b, "b1")))
        await until(lambda: b.waiting == 1)
        await asyncio.sleep(0.05)  # b's entry in Redis's queue
        tasks.append(asyncio.create_task(request(a, "a2")))
        await until(lambda: a.waiting == 1)
        await asyncio.sleep(0.05)
        for name in ("a1", "b1", "a2"):
            release[name].set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert order == ["a1", "b1", "a2"]  # a's own a2 would have had a1's place at once
    finally:
        await a.close()
        await b.close()


async def test_a_stopped_gateways_waiting_request_leaves_the_queue(key):
    holder, live = slots(key, 1), slots(key, 1)
    try:
        held = holder.place()
        await held.__aenter__()
        # A gateway's request that asked once, then the gateway stopped: it waits in Redis's queue, first.
        assert await holder._take(keys=holder._keys, args=[1, 30_000, "stopped", 1_000]) == 0
        expires = await holder._client.zscore(f"{key}:queue-expiry", "stopped")  # Redis's clock, ms
        await held.__aexit__(None, None, None)
        async with live.place():
            seconds, micros = await live._client.time()
        assert seconds * 1000 + micros // 1000 >= expires  # the place was free, and still went to the first
        assert await live_leases(key) == 0  # the stopped one is out of the queue
    finally:
        await holder.close()
        await live.close()


async def test_renewal_keeps_a_long_requests_place(key):
    holder, other = slots(key, 1, lease_seconds=1.0), slots(key, 1)
    try:
        order = []

        async def long_request():
            async with holder.place():
                order.append("holder in")
                await asyncio.sleep(3.5)  # three and a half lease lengths
                order.append("holder out")

        async def later():
            await asyncio.sleep(0.1)
            async with other.place():
                order.append("other in")

        await asyncio.wait_for(asyncio.gather(long_request(), later()), 10)
        assert order == ["holder in", "holder out", "other in"]
    finally:
        await holder.close()
        await other.close()


async def test_a_waiter_cancelled_leaves_no_lease_behind(key):
    gateway = slots(key, 1)
    try:
        first = gateway.place()
        await first.__aenter__()
        waiter = asyncio.create_task(gateway.place().__aenter__())
        await until(lambda: gateway.waiting == 1)
        await asyncio.sleep(0.05)  # polling Redis
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await first.__aexit__(None, None, None)
        await asyncio.sleep(0.05)  # the late give-back of an id whose take may have landed
        assert gateway.waiting == 0 and gateway.held == 0 and await live_leases(key) == 0
    finally:
        await gateway.close()


async def test_redis_down_goes_on_with_the_gateways_own_count_or_refuses_when_closed():
    down = f"redis://127.0.0.1:{free_port()}/0"
    open_mode = SharedSlots(down, "k", 1)
    closed_mode = SharedSlots(down, "k", 1, failure_mode="closed")
    try:
        async with open_mode.place(), open_mode.place():  # no lease held: this gateway's own gate counts
            assert open_mode.held == 0
        with pytest.raises(ServiceUnavailable) as refused:
            async with closed_mode.place():
                pass
        assert refused.value.code == "upstream_slots_unavailable" and closed_mode.waiting == 0
    finally:
        await open_mode.close()
        await closed_mode.close()


async def test_with_redis_down_a_gateway_still_holds_at_most_its_slots_or_refuses_when_closed():
    down = f"redis://127.0.0.1:{free_port()}/0"
    open_queue = GatewayQueue(2, max_waiting=16, shared=SharedSlots(down, "k", 2))
    closed_queue = GatewayQueue(2, max_waiting=16, shared=SharedSlots(down, "k", 2, failure_mode="closed"))
    inside, most = 0, 0

    async def request(queue: GatewayQueue, owner: str) -> None:
        nonlocal inside, most
        async with queue.place(owner):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.05)
            inside -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(request(open_queue, f"u{i % 3}") for i in range(6))), 20)
        assert most == 2  # this gateway's own count, as without Redis
        refused = await asyncio.gather(*(request(closed_queue, "u") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, ServiceUnavailable) and r.code == "upstream_slots_unavailable" for r in refused)
        assert closed_queue.waiting == 0 and closed_queue.capacity.held == 0
    finally:
        await open_queue.close()
        await closed_queue.close()


async def test_a_silent_redis_costs_one_timeout_per_retry_not_one_per_request():
    tries = []

    async def silent(reader, writer):  # accepts, reads, never answers; a client that timed out reconnects
        tries.append(1)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = GatewayQueue(2, max_waiting=16, shared=SharedSlots(f"redis://127.0.0.1:{port}/0", "k", 2))

    async def request(owner: str) -> None:
        async with queue.place(owner):
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(asyncio.gather(*(request(f"u{i}") for i in range(8))), 30)
        assert 1 <= len(tries) <= 3  # a try each RETRY_AFTER_SECONDS, not one per request (8)
    finally:
        await queue.close()
        server.close()


async def test_two_pass_through_gateways_send_one_replica_no_more_than_the_limit(key, replica):  # noqa: F811
    def gateway() -> UpstreamBackend:
        spec = ModelSpec(id="m", backend="upstream", upstream_mode="passthrough", upstream_urls=[replica.base + "/v1"],
                         upstream_slots=2, gguf="/nonexistent/tokenizer.gguf")
        return UpstreamBackend(spec, max_waiting=8, shared_slots=slots(key, 2))

    a, b = gateway(), gateway()
    await a.start()
    await b.start()
    try:
        asked = [asyncio.create_task(ask(gw, f"user{i}", f"p{i}", stream=i % 2 == 0))
                 for i, gw in enumerate([a, b, a, b, a, b])]
        await until(lambda: len(replica.seen) == 2)
        await until(lambda: engine_stats(a).waiting + engine_stats(b).waiting == 4)
        await asyncio.sleep(0.2)
        assert len(replica.seen) == 2  # each gateway alone would have sent two
        replica.release.set()
        assert await asyncio.wait_for(asyncio.gather(*asked), 10) == ["ok"] * 6
        assert await live_leases(key) == 0
    finally:
        await a.close()
        await b.close()
