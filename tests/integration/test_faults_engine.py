"""Faults in the llama.cpp engine path, on the real 0.5B model behind a real uvicorn server:
a decode step that raises in the middle of a batch, and clients hanging up at random points."""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import pytest

from tests.api.conftest import ALIAS_ID, SERVED_ID
from tests.integration.embedded import embedded_gguf
from tests.integration.faults import chat_body, new_id, post_chat, reconcile, rows_from_database, stream_chat
from tests.servers import serve_in_thread

pytestmark = pytest.mark.model

POISON = "FAULT-INJECT"  # a prompt holding this makes the worker's decode step raise once it runs
N_PARALLEL = 4


def faulty_engine(gguf):
    """The real engine with one seam changed: a decode step that holds a poisoned sequence which has
    already streamed three tokens raises (as a failing llama_decode binding or a worker bug would)."""
    from coderapi.engines.llama_cpp import LlamaCppEngine
    from coderapi.engines.llama_cpp.worker import Worker

    class FaultyWorker(Worker):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.fault_batch_sizes: list[int] = []  # sequences in each step that raised
            self._poisoned: dict[int, bool] = {}

        def _is_poisoned(self, req) -> bool:
            if req.id not in self._poisoned:
                self._poisoned[req.id] = POISON in self.model.detokenize(req.prompt)
            return self._poisoned[req.id]

        def _decode(self, parts):
            if any(p.seq.n_generated >= 3 and self._is_poisoned(p.seq.req) for p in parts):
                self.fault_batch_sizes.append(len(parts))
                raise RuntimeError("injected decode fault")
            return super()._decode(parts)

    class FaultyEngine(LlamaCppEngine):
        worker_class = FaultyWorker

    # One thread: on a loaded machine, llama.cpp's threads wait on each other at every barrier.
    return FaultyEngine(gguf, n_parallel=N_PARALLEL, n_ctx_per_seq=2048, n_threads=1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    gguf = embedded_gguf()
    from coderapi.app import create_app
    from coderapi.config import ModelSpec, Settings

    spec = ModelSpec(id=SERVED_ID, aliases=[ALIAS_ID], context_length=2048, n_parallel=N_PARALLEL,
                     price_input_per_million=0.07, price_output_per_million=0.16)
    settings = Settings(data_dir=tmp_path_factory.mktemp("faults-engine"), models=[spec], bootstrap_admin=False)
    app = create_app(settings, engine_factory=lambda _: faulty_engine(gguf))
    services = app.state.services
    services.db.upgrade()

    async def seed():
        user = await services.signups.create_user("faults@example.com", "correct horse battery")
        return (await services.keys.create_key(user.id, name="faults"))[1]

    key = asyncio.run(seed())
    with serve_in_thread(app, wait_healthy=120) as base:
        yield base, key, services


def _engine(services):
    return services.registry.resolve(ALIAS_ID).backend.engine


def _wait_idle(services, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = _engine(services).stats()
        if stats.running == 0 and stats.waiting == 0:
            return
        assert time.monotonic() < deadline, f"slots not freed: {stats}"
        time.sleep(0.05)


def _still_serves(base: str, key: str) -> None:
    assert httpx.get(base + "/health", timeout=10).status_code == 200
    after = post_chat(base, key, chat_body("Say hi.", 8, stream=False), new_id("after"))
    assert after.status == 200 and after.finish_reason in ("stop", "length") and after.completion_tokens


def _all(base: str, key: str, services, jobs: list[tuple[dict, str, int | None]]):
    async def run():
        headers = {"Authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=len(jobs) + 2)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300, limits=limits) as client:
            return await asyncio.gather(*(stream_chat(client, body, rid, cut) for body, rid, cut in jobs),
                                        return_exceptions=True)

    seen = asyncio.run(run())
    failed = [s for s in seen if isinstance(s, BaseException)]
    assert not failed, f"{failed[:3]}; engine: {_engine(services).stats()}"
    return seen


def test_a_decode_step_that_raises_ends_only_its_sequence(served):
    base, key, services = served
    healthy = [(chat_body(f"Count to {n}, one number per line.", 24, endless=True), new_id("ok"), None)
               for n in (30, 40, 50)]
    poisoned = (chat_body(f"{POISON}: count to 20, one number per line.", 24, endless=True), new_id("poison"), None)
    seen = _all(base, key, services, [*healthy, poisoned])

    *ok, bad = seen
    worker = _engine(services)._worker
    assert worker.fault_batch_sizes and max(worker.fault_batch_sizes) > 1  # it struck a shared batch
    # The poisoned stream had started: it ends with an error event, then [DONE].
    assert bad.status == 200 and bad.chunks >= 1
    assert bad.error is not None and bad.error["type"] == "server_error" and bad.done
    # The sequences batched with it finish their answers in full.
    for s in ok:
        assert s.error is None and s.done, s
        assert s.finish_reason == "length" and s.completion_tokens == 24, s
    _wait_idle(services)
    _still_serves(base, key)
    rows = reconcile(rows_from_database(services.db), seen)
    assert rows.status(bad.request_id) == "error"
    assert rows.rows[bad.request_id][0].completion_tokens >= 3


def test_clients_hanging_up_at_random_points_under_load(served):
    base, key, services = served
    rng = random.Random(20261202)
    jobs = []
    for i in range(16):
        if i % 2:  # half the clients hang up after a random number of chunks (0: right after the headers)
            jobs.append((chat_body(f"Write {i} lines of Python.", 48, endless=True), new_id(f"cut{i}"), rng.randint(0, 8)))
        else:
            jobs.append((chat_body(f"Write {i} words about the sea.", 12, endless=True), new_id(f"full{i}"), None))
    seen = _all(base, key, services, jobs)

    for s, (_, _, cut) in zip(seen, jobs):
        assert s.status == 200, s
        if cut is None:
            assert s.done and s.error is None and s.completion_tokens == 12, s
        else:
            assert s.cut and s.chunks == cut, s
    _wait_idle(services)  # every slot was freed, queued requests included
    _still_serves(base, key)
    rows = reconcile(rows_from_database(services.db), seen)
    assert sum(1 for s in seen if rows.status(s.request_id) == "cancelled") == 8
