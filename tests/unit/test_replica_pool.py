"""`ReplicaPool` (engines/remote/pool.py): least-outstanding choice, leases, failover order and
health marking. Health checks go through httpx.MockTransport: no sockets."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coderapi.engines.remote.pool import ReplicaPool
from coderapi.errors import Overloaded

URLS = ["http://a:1/v1", "http://b:1/v1", "http://c:1/v1"]


def pool_with(answers: dict[str, int | Exception] | None = None, urls=URLS, **kwargs) -> tuple[ReplicaPool, list[str]]:
    """A pool whose health checks get `answers[host]` (a status, or an exception raised)."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        answer = (answers or {}).get(request.url.host, 200)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return ReplicaPool(urls, client, **kwargs), seen


def hosts(replicas) -> list[str]:
    return [httpx.URL(r.base_url).host for r in replicas]


def test_the_least_outstanding_healthy_replica_comes_first_the_unhealthy_last():
    pool, _ = pool_with()
    a, b, c = pool.replicas
    assert hosts(pool.order()) == ["a", "b", "c"]  # ties keep the configured order
    a.outstanding, b.outstanding, c.outstanding = 2, 1, 3
    assert hosts(pool.order()) == ["b", "a", "c"]
    b.healthy = False  # idle but unhealthy: a last resort only
    assert hosts(pool.order()) == ["a", "c", "b"]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=6))
def test_order_is_every_replica_healthy_before_unhealthy_by_outstanding(states):
    pool, _ = pool_with(urls=[f"http://r{i}:1/v1" for i in range(len(states))])
    for replica, (healthy, outstanding) in zip(pool.replicas, states):
        replica.healthy, replica.outstanding = healthy, outstanding
    order = pool.order()
    assert sorted(map(id, order)) == sorted(map(id, pool.replicas))
    keys = [(not r.healthy, r.outstanding) for r in order]
    assert keys == sorted(keys)


def test_a_lease_counts_its_request_for_as_long_as_it_runs_however_it_ends():
    pool, _ = pool_with()
    a, b, _c = pool.replicas
    with pool.lease(a):
        with pool.lease(a), pool.lease(b):
            assert (a.outstanding, b.outstanding, pool.outstanding) == (2, 1, 3)
            assert hosts(pool.order())[0] == "c"  # the idle one now
        assert (a.outstanding, b.outstanding) == (1, 0)
    with pytest.raises(RuntimeError):
        with pool.lease(b):
            raise RuntimeError("the upstream hung up")
    assert pool.outstanding == 0


async def test_a_lease_is_given_back_when_its_task_is_cancelled():
    pool, _ = pool_with()
    started = asyncio.Event()

    async def request():
        with pool.lease(pool.replicas[0]):
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(request())
    await started.wait()
    assert pool.outstanding == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert pool.outstanding == 0


def test_failover_tries_replicas_in_order_and_routes_around_the_failed_one_afterwards():
    pool, _ = pool_with()
    a, b, c = pool.replicas
    c.outstanding = 1  # busy elsewhere
    tried = []
    for replica in pool.order():  # what the remote engine and upstream backend do per request
        with pool.lease(replica):
            tried.append((hosts([replica])[0], replica.outstanding))
            if replica is a:
                pool.mark_failed(a)  # a 5xx or a connection error before the first byte
                continue
            break
    assert tried == [("a", 1), ("b", 1)]
    assert (a.outstanding, b.outstanding, c.outstanding) == (0, 0, 1)
    assert hosts(pool.order()) == ["b", "c", "a"]  # the failed one goes last until a check passes


def test_mark_failed_warns_once_and_any_healthy_follows():
    pool, _ = pool_with(urls=URLS[:2])
    a, b = pool.replicas
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("coderapi.upstream")
    logger.addHandler(handler)
    try:
        pool.mark_failed(a)
        pool.mark_failed(a)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "http://a:1/v1" in records[0].getMessage()
    assert pool.any_healthy
    pool.mark_failed(b)
    assert not pool.any_healthy


async def test_health_checks_mark_replicas_up_and_down():
    answers = {"a": 200, "b": 503, "c": httpx.ConnectError("refused")}
    pool, seen = pool_with(answers)
    await pool.check_all()
    assert [r.healthy for r in pool.replicas] == [True, False, False]
    assert sorted(seen) == ["http://a:1/v1/models", "http://b:1/v1/models", "http://c:1/v1/models"]
    answers.update(b=200, c=200)  # they came back
    await pool.check_all()
    assert all(r.healthy for r in pool.replicas)


async def test_the_checker_keeps_checking_until_the_pool_closes():
    pool, seen = pool_with({"a": 500}, urls=URLS[:1], check_interval=0.01)
    await pool.start()
    assert not pool.replicas[0].healthy  # checked once before start returns

    async def three_checks():
        while len(seen) < 3:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(three_checks(), timeout=10)  # a loose bound: it checks again, on its own
    await pool.close()
    n = len(seen)
    await asyncio.sleep(0.05)
    assert len(seen) == n  # no check after close


def test_health_urls_and_the_error_when_none_is_left():
    pool, _ = pool_with(urls=["http://a:1/v1/"], health_path="//health")
    [a] = pool.replicas
    assert a.base_url == "http://a:1/v1" and a.root == "http://a:1"
    assert pool.health_url(a) == "http://a:1/health"  # llama-server's health lives at the root
    assert ReplicaPool(["http://a:1/v1"], None).health_url(a) == "http://a:1/v1/models"
    error = pool.none_left()
    assert isinstance(error, Overloaded) and error.retry_after == 5
