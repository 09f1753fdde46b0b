"""The pass-through backend's upstream client (backends/upstream/client.py), against a raw HTTP
upstream that counts its connections: keep-alive across streams, a cap on connections per
replica, stream lines of any size, and an upstream answer that is not JSON."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.conftest import Platform
from tests.raw_upstream import BIG_CHARS, MODEL, passthrough_gateway, raw_upstream

CAP = 2


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with raw_upstream() as upstream, passthrough_gateway(
        tmp_path_factory.mktemp("gw"), upstream, "raw@example.com",
        upstream_connections_per_replica=CAP, price_output_per_million=1.0,
    ) as platform:
        yield platform, upstream


def _ask(platform: Platform, content: str, **extra):
    return platform.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **extra)


def test_streams_keep_their_connection_when_the_last_chunk_trails_done(gateway):
    platform, upstream = gateway
    before = set(upstream.chat_connections)
    for _ in range(3):
        chunks = list(_ask(platform, "stream", stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed"
    assert len(upstream.chat_connections - before) <= 1  # one keep-alive connection served all three


def test_requests_beyond_the_cap_per_replica_wait_for_a_connection(gateway):
    platform, upstream = gateway
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: _ask(platform, "hold"), range(5)))
    assert [a.choices[0].message.content for a in answers] == ["whole"] * 5
    assert upstream.most_in_flight == CAP


def test_a_stream_line_larger_than_aiohttps_own_limit_passes(gateway):
    platform, _ = gateway
    # max_tokens: a budget BIG_CHARS of text fits (past 64 characters a token, a stream is over its budget)
    chunks = list(_ask(platform, "big", stream=True, max_tokens=8192))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "x" * BIG_CHARS


def test_an_upstream_answer_that_is_not_json_is_a_clean_502(gateway):
    platform, _ = gateway
    answer = platform.http(platform.key).post("/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "not json"}]})
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["code"] == "upstream_error" and "html" not in answer.text


def test_a_client_that_hangs_up_mid_stream_closes_the_upstream_connection(gateway):
    platform, upstream = gateway
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "slow"}], "stream": True}
    with platform.http(platform.key) as api, api.stream("POST", "/v1/chat/completions", json=payload) as answer:
        for line in answer.iter_lines():
            if "tick" in line:
                break  # hang up after the first chunk
    deadline = time.monotonic() + 5
    while upstream.hung_up == 0:
        assert time.monotonic() < deadline, "the replica kept streaming to a gateway whose client left"
        time.sleep(0.05)
