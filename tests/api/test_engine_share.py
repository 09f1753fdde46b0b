"""The model's places (its sequence slots and the waiting places behind them) are shared: one user's
requests may hold at most their share, so another user always finds a place; the engine is told
whose request it runs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from coderapi.engines.fake import FakeEngine
from tests.api.conftest import ALIAS_ID, launch, make_account

LONG = "repeat: " + "x" * 2000


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    engines: list[FakeEngine] = []

    def engine(spec):  # 1 slot and 3 waiting places; one user holds at most 1 + 1 of them
        engines.append(FakeEngine(context_length=spec.context_length, n_parallel=1, max_waiting=3,
                                  max_waiting_per_owner=1, token_delay=0.05))
        return engines[-1]

    with launch(tmp_path_factory.mktemp("engine-share"), engine=engine) as running:
        running.engine = engines[0]
        yield running


async def _until(condition, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_one_user_holds_at_most_its_share_and_another_still_gets_a_place(shared):
    flooder, other = make_account(shared), make_account(shared)
    engine = shared.engine

    async def scenario():
        async with httpx.AsyncClient(base_url=shared.base, timeout=60) as client:
            def ask(key: str, stream: bool = True):
                return client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json={
                    "model": ALIAS_ID, "messages": [{"role": "user", "content": LONG}], "stream": stream,
                    "max_tokens": 2000,
                })

            # The flooder's first two take the slot and one waiting place (~100 s of tokens each).
            held = [asyncio.create_task(ask(flooder.key)) for _ in range(2)]
            await _until(lambda: engine.stats().running == 1 and engine.stats().waiting == 1)
            refused = await asyncio.wait_for(ask(flooder.key), 10)  # at once, not once a place frees
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            error = refused.json()["error"]
            assert error["code"] == "concurrency_limit_exceeded" and "at most 2 per user" in error["message"]
            # Without the share the flooder could take every waiting place, and this would be 503.
            held.append(asyncio.create_task(ask(other.key, stream=False)))
            await _until(lambda: engine.stats().waiting == 2)
            assert not any(task.done() for task in held)
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
        await _until(lambda: engine.stats().running == engine.stats().waiting == 0)

    asyncio.run(scenario())
    rows = shared.wait_rows(flooder.user_id, 3)
    assert [r.status for r in rows].count("refused") == 1
    assert not any(r.cost for r in rows if r.status == "refused")


@pytest.mark.parametrize("route, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True, "n": 2}),
    ("/v1/completions", {"prompt": "def f():"}),
    ("/v1/completions", {"prompt": ["a", "b"], "stream": True}),
])
def test_the_engine_is_told_whose_request_it_runs(shared, route, body):
    user = make_account(shared)
    before = len(shared.engine.requests)
    with httpx.Client(base_url=shared.base, timeout=60) as client:
        response = client.post(route, json={"model": ALIAS_ID, "max_tokens": 4, **body},
                               headers={"Authorization": f"Bearer {user.key}"})
    assert response.status_code == 200, response.text
    asked = list(shared.engine.requests)[before:]
    assert len(asked) == 2 if ("n" in body or isinstance(body.get("prompt"), list)) else len(asked) == 1
    assert {params.owner for _, params in asked} == {user.user_id}
