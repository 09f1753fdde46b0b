"""One key (or one user) cannot hold more than its share of requests running at once: the rest get
429 concurrency_limit_exceeded at once, other callers are unaffected, and a finished request frees
its place."""

from __future__ import annotations

import time
from contextlib import ExitStack

import httpx
import pytest

from coderapi.store.tables import UsageEvent
from tests.api.conftest import ALIAS_ID, launch, make_account
from tests.servers import raw_chat_post, raw_connection

# ~2,000 tokens: unread, the stream's answer fills the socket and the request stays running
LONG = "repeat: " + "x" * 2000


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    with launch(tmp_path_factory.mktemp("in-flight"), max_concurrent_requests_per_key=2,
                max_concurrent_requests_per_user=3) as running:
        yield running


def _body(content: str, stream: bool) -> dict:
    return {"model": ALIAS_ID, "messages": [{"role": "user", "content": content}], "stream": stream,
            "max_tokens": 2000}


def _open_stream(stack: ExitStack, client: httpx.Client, key: str):
    response = stack.enter_context(client.stream(
        "POST", "/v1/chat/completions", json=_body(LONG, True), headers={"Authorization": f"Bearer {key}"}
    ))
    assert response.status_code == 200
    lines = response.iter_lines()
    next(lines)  # the request is running
    stack.callback(lines.close)  # kept open until the stack closes (a dropped iterator hangs up)
    return response


def _ask(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/v1/chat/completions", json=_body("hi", False), headers={"Authorization": f"Bearer {key}"})


def test_a_key_and_a_user_are_capped_and_others_are_not(capped):
    user = make_account(capped)
    _, second_key = capped.run(capped.services.keys.create_key(user.user_id, name="second"))
    stranger = make_account(capped)
    with httpx.Client(base_url=capped.base, timeout=60) as client, ExitStack() as streams:
        _open_stream(streams, client, user.key)
        _open_stream(streams, client, user.key)
        refused = _ask(client, user.key)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        error = refused.json()["error"]
        assert error["code"] == "concurrency_limit_exceeded" and "per key" in error["message"]
        _open_stream(streams, client, second_key)  # the user's third: still within the user's cap
        refused = _ask(client, second_key)
        assert refused.status_code == 429 and "per user" in refused.json()["error"]["message"]
        assert _ask(client, stranger.key).status_code == 200  # another account is not affected
    # The streams are closed: their places come back once the server sees the hang-ups.
    with httpx.Client(base_url=capped.base, timeout=60) as client:
        _wait_until_free(client, user.key)


def test_refusals_are_metered_and_every_place_comes_back(capped):
    user = make_account(capped)
    with httpx.Client(base_url=capped.base, timeout=60) as client:
        for _ in range(3):  # each round fills the key's two places, then hangs up
            with ExitStack() as streams:
                _open_stream(streams, client, user.key)
                _open_stream(streams, client, user.key)
                assert _ask(client, user.key).status_code == 429
            _wait_until_free(client, user.key)
    deadline = time.monotonic() + 20  # usage rows are written just after each answer
    while len(refused := _refused_rows(capped, user.user_id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(refused) >= 3 and {r.status for r in refused} == {"refused"} and not any(r.cost for r in refused)


def _refused_rows(platform, user_id: int) -> list:
    with platform.services.db.session() as session:
        return session.query(UsageEvent).filter(
            UsageEvent.user_id == user_id, UsageEvent.error_code == "concurrency_limit_exceeded"
        ).all()


def _wait_until_free(client: httpx.Client, key: str) -> None:
    deadline = time.monotonic() + 20
    while _ask(client, key).status_code == 429:
        assert time.monotonic() < deadline, "the hung-up streams never gave their places back"
        time.sleep(0.2)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/tokenize"])
def test_a_request_over_the_cap_is_answered_before_its_body_is_read(capped, path):
    """A key's bodies in memory at once are bounded by its cap, not by the connections it opens:
    500 connections each sending 4 MiB took the server from 2.0 to 3.2 GB when bodies were read first."""
    user = make_account(capped)
    with httpx.Client(base_url=capped.base, timeout=60) as client, ExitStack() as streams:
        _open_stream(streams, client, user.key)
        _open_stream(streams, client, user.key)
        sock = raw_connection(capped.base)
        with sock:
            head = raw_chat_post(user.key, b'{"model": "', declared_length=4 * 1024 * 1024).replace(
                b"/v1/chat/completions", path.encode(), 1)
            sock.sendall(head)  # a few bytes of a 4 MiB body, and no more: the answer must not wait for it
            answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
    assert b"concurrency_limit_exceeded" in answer


def test_a_client_that_hangs_up_while_sending_its_body_is_recorded_cancelled_and_frees_its_place(capped):
    user = make_account(capped)
    with raw_connection(capped.base) as sock:
        sock.sendall(raw_chat_post(user.key, b'{"model": "', declared_length=1000))
        time.sleep(0.5)  # the server holds the key's place and waits for the body
    deadline = time.monotonic() + 20
    while not (rows := capped.usage_rows(user.user_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(r.status, r.status_code, r.cost) for r in rows] == [("cancelled", 499, 0)]
    with httpx.Client(base_url=capped.base, timeout=60) as client:
        assert _ask(client, user.key).status_code == 200
        assert _ask(client, user.key).status_code == 200  # both places free
