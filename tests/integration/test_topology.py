"""The scaled-out topology, end to end on loopback: two `coderapi serve` gateways (real
subprocesses, started at the same moment) sharing one PostgreSQL schema and one Redis, in front of
two OpenAI-compatible replica processes (tests/integration/replica_app.py) behind a model entry
with "backend": "upstream".

Shown on these processes: migrations run once when both start together; a key disabled or deleted
through gateway A is refused on gateway B at once; RPM, the balance and a key's spending limit hold
globally under concurrent load split over both, and so does a model's `upstream_slots` (the replica never
holds more than that many of both gateways' streams); a replica SIGKILLed mid-load fails no request that
had not started streaming, streams that had started on it end with an error event then [DONE], and
once it is back on its port it is used again; the usage rows on PostgreSQL reconcile exactly with
what the clients received."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_or_skip
from tests.integration.faults import Seen, chat_body, new_id, reconcile, rows_from_database, stream_chat
from tests.integration.postgres import fresh_schema
from tests.integration.topology import GatewayProcess, ReplicaProcess, ask, client, gateway_flags, wait_for
from tests.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

MODEL = "topology/replicated"
SLOTTED, SLOTS = "topology/slotted", 2
PRICE_IN = Decimal(10)  # USD per million prompt tokens
PRICE_OUT = Decimal(1000)  # USD per million completion tokens: 0.001 per token, so money matters
REPLICA_PROMPT_TOKENS = 7  # what replica_app reports for every request
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def cost_of(completion_tokens: int) -> Decimal:
    return (REPLICA_PROMPT_TOKENS * PRICE_IN + completion_tokens * PRICE_OUT) / 1_000_000


@dataclass
class Account:
    user_id: int
    key: str
    prefix: str
    management: str


@dataclass
class Topology:
    gateways: list[GatewayProcess]
    replicas: list[ReplicaProcess]
    db: object  # coderapi.store.database.Database on the shared schema
    accounts: object  # an AccountService on it, to seed users and keys

    def account(self, credit: str, **key_fields) -> Account:
        async def seed():
            user = await self.accounts.signups.create_user(f"topo-{uuid.uuid4().hex[:10]}@example.com", "correct horse battery")
            await self.accounts.users.grant_credit(user.id, Decimal(credit), reason="topology test", granted_by="test")
            info, key = await self.accounts.keys.create_key(user.id, name="inference", **key_fields)
            _, management = await self.accounts.keys.create_key(user.id, name="management", kind="management")
            return Account(user.id, key, info.prefix, management)

        return asyncio.run(seed())

    def scalar(self, sql: str, **params):
        from sqlalchemy import text

        with self.db.session() as session:
            return session.execute(text(sql), params).scalar_one()


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    require_or_skip(Path(REDIS_SERVER).exists(), "redis-server is not installed")
    pytest.importorskip("redis")
    pytest.importorskip("psycopg")
    from coderapi.services.accounts import AccountService
    from coderapi.store.database import Database
    from tests.integration.test_faults_redis import redis_server

    tmp = tmp_path_factory.mktemp("topology")
    redis_port = free_port()
    with fresh_schema("coderapi_topology") as schema, redis_server(redis_port, tmp):
        # R1 holds requests that say "hold" (not yet streaming when it is killed); R2 answers them.
        replicas = [ReplicaProcess("R1", free_port(), tmp / "r1.log", hold=60), ReplicaProcess("R2", free_port(), tmp / "r2.log")]
        model = {"id": MODEL, "backend": "upstream", "upstream_mode": "passthrough", "upstream_urls": [r.url for r in replicas],
                 "upstream_model": "replica-model", "context_length": 4096,
                 "price_input_per_million": float(PRICE_IN), "price_output_per_million": float(PRICE_OUT)}
        # The same pool with upstream_slots, on R2 alone, so that R2's peak is what both gateways sent.
        slotted = model | {"id": SLOTTED, "upstream_urls": [replicas[1].url], "upstream_slots": SLOTS}
        flags = gateway_flags(schema.dsn, f"redis://127.0.0.1:{redis_port}/0", model, slotted)
        gateways = [GatewayProcess(name, free_port(), tmp / f"gateway-{name}", flags) for name in ("A", "B")]
        db = Database(schema.dsn)
        try:
            for replica in replicas:
                replica.start()
            for replica in replicas:
                replica.wait_ready()
            for gateway in gateways:  # together, on an empty schema: both migrate and bootstrap
                gateway.start()
            for gateway in gateways:
                gateway.wait_healthy()
            yield Topology(gateways, replicas, db, AccountService(db, starting_credit=0))
        finally:
            for gateway in gateways:
                gateway.stop()
            for replica in replicas:
                replica.kill()
            db.dispose()


# clients -------------------------------------------------------------------------------------


def body(prompt: str, max_tokens: int, *, stream: bool = False) -> dict:
    return chat_body(prompt, max_tokens, stream=stream, model=MODEL)


async def burst(topology: Topology, key: str, count: int, max_tokens: int, tag: str) -> list[Seen]:
    """`count` non-streamed requests at once, alternating between gateway A and gateway B."""
    clients = [client(g, key) for g in topology.gateways]
    try:
        return list(await asyncio.gather(*(
            ask(clients[i % 2], body(f"{tag} {i}", max_tokens), new_id(f"{tag}{i}")) for i in range(count))))
    finally:
        for http in clients:
            await http.aclose()


def served_by(seen: Seen) -> str:
    return seen.text[:2]  # "R1" or "R2": replica_app's chunks name the replica


# tests -----------------------------------------------------------------------------------------


def test_gateways_started_together_migrate_the_shared_schema_once(topology):
    from alembic.script import ScriptDirectory

    from coderapi.store.database import alembic_config

    assert all(g.proc.poll() is None for g in topology.gateways)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert topology.scalar("SELECT count(*) FROM alembic_version") == 1
    assert topology.scalar("SELECT version_num FROM alembic_version") == head
    # The first-start admin was created once, and its key printed by exactly one of the two.
    assert topology.scalar("SELECT count(*) FROM users WHERE email = 'admin@localhost'") == 1
    printed = [key for g in topology.gateways for key in g.printed_keys()]
    assert len(printed) == 1, printed


def test_a_key_disabled_or_deleted_on_a_is_refused_on_b_at_once(topology):
    a, b = topology.gateways
    account = topology.account("10")
    manage = {"Authorization": f"Bearer {account.management}"}
    url = f"{a.base}/v1/keys/{account.prefix}"

    async def on(gateway: GatewayProcess) -> Seen:
        async with client(gateway, account.key) as http:
            return await ask(http, body("hello", 3), new_id(f"revoke-{gateway.name}"))

    assert asyncio.run(on(b)).status == 200  # B has served this key: nothing it might remember helps it
    assert httpx.patch(url, json={"disabled": True}, headers=manage, timeout=10).status_code == 200
    refused = asyncio.run(on(b))
    assert refused.status == 403 and refused.error["code"] == "key_disabled", refused
    assert httpx.patch(url, json={"disabled": False}, headers=manage, timeout=10).status_code == 200
    assert asyncio.run(on(b)).status == 200  # enabled again on A: served on B at once
    assert httpx.delete(url, headers=manage, timeout=10).status_code == 200
    gone = asyncio.run(on(b))
    assert gone.status == 401 and gone.error["type"] == "authentication_error", gone
    assert asyncio.run(on(a)).status == 401


def test_rpm_holds_across_both_gateways(topology):
    rpm = 6
    account = topology.account("10")
    asyncio.run(topology.accounts.users.set_user_limits(account.user_id, rpm_limit=rpm, tpm_limit=None))
    started = time.monotonic()
    seen = asyncio.run(burst(topology, account.key, 3 * rpm, 3, "rpm"))
    elapsed = time.monotonic() - started
    admitted = [s for s in seen if s.status == 200]
    limited = [s for s in seen if s.status == 429]
    assert len(admitted) + len(limited) == len(seen), [s for s in seen if s.status not in (200, 429)]
    # The shared bucket starts full (rpm) and refills rpm/60 per second while the burst runs.
    assert rpm <= len(admitted) <= rpm + math.floor(elapsed * rpm / 60), (len(admitted), elapsed)
    assert all(s.error["code"] == "rate_limit_exceeded" and s.retry_after for s in limited), limited
    reconcile(rows_from_database(topology.db), seen)


def test_the_balance_holds_across_both_gateways(topology):
    credit = Decimal("0.1")  # each request costs 0.01007: 30 of them would be three times the credit
    account = topology.account(str(credit))
    seen = asyncio.run(burst(topology, account.key, 30, 10, "balance"))
    admitted = [s for s in seen if s.status == 200]
    refused = [s for s in seen if s.status != 200]
    assert admitted and refused
    assert all(s.status == 403 and s.error["code"] == "insufficient_quota" for s in refused), refused
    reconcile(rows_from_database(topology.db), seen)
    spent = topology.scalar("SELECT coalesce(sum(cost), 0) FROM usage_events WHERE user_id = :u", u=account.user_id)
    balance = topology.scalar("SELECT balance FROM users WHERE id = :u", u=account.user_id)
    assert spent == len(admitted) * cost_of(10)
    assert balance >= 0 and balance == credit - spent
    held = "SELECT count(*) FROM cost_reservations WHERE user_id = :u AND settled_at IS NULL"
    assert topology.scalar(held, u=account.user_id) == 0  # every hold was settled with its usage row


def test_a_spending_limit_holds_across_both_gateways(topology):
    threshold = Decimal("0.05")
    account = topology.account("10", limit_threshold=threshold)
    seen = asyncio.run(burst(topology, account.key, 30, 10, "limit"))
    admitted = [s for s in seen if s.status == 200]
    refused = [s for s in seen if s.status != 200]
    assert admitted and refused
    assert all(s.status == 403 and s.error["code"] == "spending_limit_exceeded" for s in refused), refused
    reconcile(rows_from_database(topology.db), seen)
    spent = topology.scalar("SELECT coalesce(sum(cost), 0) FROM usage_events WHERE key_prefix = :p", p=account.prefix)
    assert spent == len(admitted) * cost_of(10) and spent <= threshold


async def _kill_mid_load(topology: Topology, key: str) -> dict[str, list[Seen]]:
    r1, _ = topology.replicas
    a, b = clients = [client(g, key) for g in topology.gateways]
    out: dict[str, list[Seen]] = {"held": [], "started": [], "load": [], "after": []}
    try:
        # Held by R1 before its first byte (each gateway sends to R1 first while both are idle):
        # a non-streamed request through A, a streamed one through B.
        held = [asyncio.create_task(ask(a, body("hold json", 5), new_id("held-json")))]
        await wait_for(lambda: r1.received("hold json"), 20, "R1 never got the held request")
        held_stream = Seen(new_id("held-stream"))
        held.append(asyncio.create_task(stream_chat(b, body("hold stream", 5, stream=True), held_stream.request_id,
                                                    seen=held_stream)))
        await wait_for(lambda: r1.received("hold stream"), 20, "R1 never got the held stream")
        # Two long streams per gateway: least-outstanding routing puts one on each replica (R1 holds
        # one request per gateway, so the first goes to R2 and the second ties and goes to R1). The
        # load starts only once they stream: a load request sent among them would take R1's place.
        streams = [Seen(new_id(f"long{i}")) for i in range(4)]
        stream_tasks = [asyncio.create_task(stream_chat(clients[i % 2], body(f"long {i}", 100, stream=True),
                                                        s.request_id, seen=s)) for i, s in enumerate(streams)]
        await wait_for(lambda: all(s.chunks >= 2 for s in streams), 30, "the long streams did not start")
        stop = asyncio.Event()

        async def load(http: httpx.AsyncClient, tag: str) -> None:  # non-streamed, back to back
            i = 0
            while not stop.is_set():
                out["load"].append(await ask(http, body(f"load {tag}{i}", 4), new_id(f"load-{tag}{i}")))
                i += 1

        loaders = [asyncio.create_task(load(http, http_tag)) for http, http_tag in ((a, "a"), (b, "b"), (a, "c"), (b, "d"))]
        await wait_for(lambda: len(out["load"]) >= 4, 30, "the load did not run")
        r1.kill()
        # Streams sent after the kill have not started anywhere: they must succeed too.
        out["after"] = list(await asyncio.gather(*(
            stream_chat(clients[i % 2], body(f"after {i}", 5, stream=True), new_id(f"after{i}")) for i in range(4))))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*loaders)
        out["held"] = [await held[0], (await held[1])]
        await asyncio.gather(*stream_tasks)
        out["started"] = streams
    finally:
        for http in clients:
            await http.aclose()
    return out


async def _probe_until_served_by(topology: Topology, key: str, replica: str) -> list[Seen]:
    """Each gateway in turn, until each has sent a request to `replica` again."""
    probes: list[Seen] = []
    for gateway in topology.gateways:
        async with client(gateway, key) as http:
            deadline = time.monotonic() + 30  # the gateways check their replicas every 5 s
            while True:
                probes.append(await ask(http, body("probe", 3), new_id(f"probe-{gateway.name}")))
                assert probes[-1].status == 200 and probes[-1].error is None, probes[-1]
                if served_by(probes[-1]) == replica:
                    break
                assert time.monotonic() < deadline, f"gateway {gateway.name} never used {replica} again"
                await asyncio.sleep(0.3)
    return probes


def test_upstream_slots_hold_across_both_gateways(topology):
    account = topology.account("100")
    r2 = topology.replicas[1].url.removesuffix("/v1")
    assert httpx.get(r2 + "/peak", timeout=10).json()["in_flight"] == 0
    httpx.post(r2 + "/peak/reset", timeout=10)

    async def streams() -> list[Seen]:
        clients = [client(g, account.key) for g in topology.gateways]
        try:
            return list(await asyncio.gather(*(
                stream_chat(clients[i % 2], chat_body(f"slotted {i}", 8, stream=True, model=SLOTTED), new_id(f"slot{i}"))
                for i in range(8))))
        finally:
            for http in clients:
                await http.aclose()

    seen = asyncio.run(streams())
    assert all(s.outcome == "success" and s.completion_tokens == 8 for s in seen), seen
    # Each gateway alone would send SLOTS of its four at once; together they send SLOTS.
    assert httpx.get(r2 + "/peak", timeout=10).json()["peak"] == SLOTS
    reconcile(rows_from_database(topology.db), seen)


def test_a_replica_killed_mid_load_fails_only_started_streams_and_is_used_again_once_back(topology):
    account = topology.account("100")
    out = asyncio.run(_kill_mid_load(topology, account.key))

    for s in out["held"]:  # on R1 but not yet streaming when it died: failed over to R2
        assert s.status == 200 and s.error is None and served_by(s) == "R2" and s.completion_tokens == 5, s
    assert out["held"][1].done
    assert len(out["load"]) >= 8
    for s in out["load"] + out["after"]:  # no failure at all among requests that had not started
        assert s.status == 200 and s.error is None, s
    on_r1 = [s for s in out["started"] if served_by(s) == "R1"]
    on_r2 = [s for s in out["started"] if served_by(s) == "R2"]
    assert on_r1 and on_r2, [s.text[:8] for s in out["started"]]
    for s in on_r1:  # started on R1: an error event, then [DONE]
        assert s.status == 200 and s.done and s.error is not None, s
        assert s.error["type"] == "upstream_error" and s.error["code"] == "upstream_stream_error", s
    for s in on_r2:
        assert s.error is None and s.done and s.completion_tokens == 100, s

    topology.replicas[0].start()  # back on the same port
    topology.replicas[0].wait_ready()
    probes = asyncio.run(_probe_until_served_by(topology, account.key, "R1"))

    everything = out["held"] + out["load"] + out["after"] + out["started"] + probes
    rows = reconcile(rows_from_database(topology.db), everything)
    assert all(rows.status(s.request_id) == "error" for s in on_r1)


def test_usage_rows_on_postgres_reconcile_with_what_clients_received(topology):
    account = topology.account("100")
    asked: dict[str, int] = {}  # request id -> max_tokens

    def named(tag: str, max_tokens: int) -> str:
        asked[request_id := new_id(tag)] = max_tokens
        return request_id

    async def mixed() -> list[Seen]:
        clients = [client(g, account.key) for g in topology.gateways]
        try:
            jobs = [ask(clients[i % 2], body(f"json {i}", 3 + i), named(f"json{i}", 3 + i)) for i in range(10)]
            jobs += [stream_chat(clients[i % 2], body(f"stream {i}", 4 + i, stream=True), named(f"stream{i}", 4 + i))
                     for i in range(6)]
            jobs += [stream_chat(clients[i % 2], body(f"cut {i}", 60, stream=True), named(f"cut{i}", 60), cut_after=2)
                     for i in range(4)]
            return list(await asyncio.gather(*jobs))
        finally:
            for http in clients:
                await http.aclose()

    seen = asyncio.run(mixed())
    assert sum(s.outcome == "success" for s in seen) == 16 and sum(s.outcome == "cut" for s in seen) == 4, seen
    for s in seen:  # the replica generates exactly max_tokens: the client got every one, and its usage says so
        if s.outcome == "success":
            assert s.completion_tokens == asked[s.request_id] and s.done == ("stream" in s.request_id), s
    reconcile(rows_from_database(topology.db), seen)
    # Nothing more than what the clients sent was recorded, and the balance moved by the rows' costs.
    ids = {s.request_id for s in seen}
    from sqlalchemy import text

    with topology.db.session() as session:
        recorded = [r[0] for r in session.execute(text("SELECT request_id FROM usage_events WHERE user_id = :u"),
                                                  {"u": account.user_id})]
    assert sorted(recorded) == sorted(ids)
    spent = topology.scalar("SELECT coalesce(sum(cost), 0) FROM usage_events WHERE user_id = :u", u=account.user_id)
    assert topology.scalar("SELECT balance FROM users WHERE id = :u", u=account.user_id) == Decimal(100) - spent
    success_spent = sum((cost_of(s.completion_tokens) for s in seen if s.outcome == "success"), Decimal(0))
    assert spent >= success_spent
