"""A non-streamed request whose client hangs up stops generating at once: its usage row says
cancelled (499, client_disconnected) with fewer tokens than the answer would have had, and the
sequence's place is free for the next request."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.conftest import ALIAS_ID

LONG = "repeat: " + "x" * 1900  # ~1,900 tokens at 1 ms each: seconds of work for the scripted engine


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}]}),
    ("/v1/completions", {"prompt": "<|im_start|>user\n" + LONG + "<|im_end|>\n<|im_start|>assistant\n"}),
])
def test_a_client_that_hangs_up_stops_the_generation(platform, path, body):
    headers = {"Authorization": f"Bearer {platform.key}"}
    # A first request warms the fresh app (its key, its credit lease, the preparation threads), so
    # that the abandoned one below is generating when its client hangs up, however loaded the machine.
    rows = len(platform.usage_rows())
    warm = httpx.post(platform.base + path, json={**body, "model": ALIAS_ID, "max_tokens": 2}, headers=headers)
    assert warm.status_code == 200, warm.text
    before = len(platform.wait_rows(None, rows + 1))  # the warm-up's row is written just after its answer
    assert before == rows + 1
    request = {"model": ALIAS_ID, "max_tokens": 1900, **body}
    with pytest.raises(httpx.ReadTimeout):  # the whole answer takes over 2 s: ~1,900 tokens at 1 ms or more
        httpx.post(platform.base + path, json=request, headers=headers, timeout=httpx.Timeout(5.0, read=0.8))
    hung_up = time.monotonic()
    deadline = hung_up + 10
    while len(platform.usage_rows()) == before:
        assert time.monotonic() < deadline, "no usage row for the abandoned request"
        time.sleep(0.05)
    row = platform.usage_rows()[-1]
    assert (row.status, row.status_code, row.error_code) == ("cancelled", 499, "client_disconnected")
    assert 0 < row.completion_tokens < 1900  # metered for what was generated, and stopped early
