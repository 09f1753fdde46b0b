"""Every inference request leaves exactly one usage row: success, error, refusal, hang-up."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.api.conftest import ALIAS_ID, SERVED_ID


def _rows_after(platform, before: int, expected: int, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        rows = platform.usage_rows()[before:]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_success_error_and_stream_rows(platform):
    before = len(platform.usage_rows())
    client = platform.client()
    done = client.chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: abc"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "x"}], temperature=9)
    list(client.chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "Hi"}], stream=True))
    rows = _rows_after(platform, before, 3)
    time.sleep(0.2)
    assert len(platform.usage_rows()) - before == 3
    ok, bad, streamed = rows
    assert (ok.status, ok.status_code, ok.model, ok.endpoint) == ("success", 200, ALIAS_ID, "chat.completions")
    assert ok.prompt_tokens == done.usage.prompt_tokens and ok.completion_tokens == done.usage.completion_tokens
    assert float(ok.cost) == pytest.approx((ok.prompt_tokens * 1.0 + ok.completion_tokens * 2.0) / 1e6)
    assert ok.ttft_ms is not None and ok.latency_ms >= ok.ttft_ms
    assert (bad.status, bad.status_code) == ("error", 400)
    assert streamed.status == "success" and streamed.completion_tokens > 0


def test_client_gone_mid_stream_is_recorded_as_cancelled(platform):
    before = len(platform.usage_rows())
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "repeat: " + "z" * 2000}], "stream": True}
    with httpx.stream("POST", platform.base + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {platform.key}"}) as response:
        for _ in response.iter_lines():
            break  # hang up after the first event
    rows = _rows_after(platform, before, 1)
    assert len(rows) == 1
    assert rows[0].status == "cancelled" and rows[0].completion_tokens < 2000
    engine = platform.services.registry.resolve(SERVED_ID).backend.engine
    deadline = time.monotonic() + 5
    while engine.stats().running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.stats().running == 0  # the sequence was freed
