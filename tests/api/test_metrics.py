"""/metrics observes inter-token latency (time between a choice's tokens) for streamed requests."""

from __future__ import annotations

import re
import time

import httpx

from tests.api.conftest import ALIAS_ID

_ITL_COUNT = re.compile(r'^coderapi:inter_token_latency_seconds_count\{model_name="[^"]+"\} (\S+)$', re.M)


def _itl_count(base: str) -> float:
    found = _ITL_COUNT.findall(httpx.get(base + "/metrics").text)
    return sum(float(v) for v in found)


def test_streamed_request_observes_inter_token_latency(platform):
    before = _itl_count(platform.base)
    stream = platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    tokens = next(c.usage for c in chunks if c.usage).completion_tokens
    assert tokens >= 2
    deadline = time.monotonic() + 5  # the request is recorded as its stream closes on the server
    while _itl_count(platform.base) < before + tokens - 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _itl_count(platform.base) == before + tokens - 1
    text = httpx.get(platform.base + "/metrics").text
    assert "coderapi:inter_token_latency_seconds_bucket" in text


_QUEUE_COUNT = re.compile(r'^coderapi:request_queue_time_seconds_count\{model_name="[^"]+"\} (\S+)$', re.M)


def test_each_request_observes_its_queue_time(platform):
    def count() -> float:
        return sum(float(v) for v in _QUEUE_COUNT.findall(httpx.get(platform.base + "/metrics").text))

    before = count()
    platform.client().chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "Hi"}])
    deadline = time.monotonic() + 5
    while count() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count() == before + 1
