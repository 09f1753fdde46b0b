"""/metrics observes inter-token latency (time between a choice's tokens) for streamed requests."""

from __future__ import annotations

import re
import time

import httpx

from tests.api.conftest import ALIAS_ID, METRICS_TOKEN, launch

_ITL_COUNT = re.compile(r'^coderapi:inter_token_latency_seconds_count\{model_name="[^"]+"\} (\S+)$', re.M)

METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def _itl_count(base: str) -> float:
    found = _ITL_COUNT.findall(httpx.get(base + "/metrics", headers=METRICS_AUTH).text)
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
    text = httpx.get(platform.base + "/metrics", headers=METRICS_AUTH).text
    assert "coderapi:inter_token_latency_seconds_bucket" in text


_QUEUE_COUNT = re.compile(r'^coderapi:request_queue_time_seconds_count\{model_name="[^"]+"\} (\S+)$', re.M)


def test_each_request_observes_its_queue_time(platform):
    def count() -> float:
        return sum(float(v) for v in _QUEUE_COUNT.findall(httpx.get(platform.base + "/metrics", headers=METRICS_AUTH).text))

    before = count()
    platform.client().chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "Hi"}])
    deadline = time.monotonic() + 5
    while count() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count() == before + 1


# ---- who may read /metrics ----


def test_metrics_needs_the_token_or_an_admin_management_key(platform):
    url = platform.base + "/metrics"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert "metrics_token" in missing.json()["error"]["message"]
    assert httpx.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    # An ordinary user's keys, inference or management, may not read it.
    assert httpx.get(url, headers={"Authorization": f"Bearer {platform.key}"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {platform.management_key}"}).status_code == 403
    assert httpx.get(url, headers=METRICS_AUTH).status_code == 200

    async def admin_key():
        accounts = platform.services
        admin = await accounts.signups.create_user("metrics-admin@example.com", "correct horse battery", role="admin")
        _, key = await accounts.keys.create_key(admin.id, name="ops", kind="management")
        return key

    answer = httpx.get(url, headers={"Authorization": f"Bearer {platform.run(admin_key())}"})
    assert answer.status_code == 200 and "coderapi:num_requests_running" in answer.text


def test_metrics_without_a_token_are_closed_unless_public_by_opt_in(tmp_path):
    with launch(tmp_path / "closed", metrics_token=None) as closed:
        assert httpx.get(closed.base + "/metrics").status_code == 401
        assert httpx.get(closed.base + "/metrics", headers=METRICS_AUTH).status_code == 401
    with launch(tmp_path / "public", metrics_token=None, metrics_public=True) as public:
        assert httpx.get(public.base + "/metrics").status_code == 200


def test_refusals_past_the_users_row_budget_are_counted_in_metrics_not_written(tmp_path):
    with launch(tmp_path, default_rpm=1, empty_usage_rows_per_user_minute=2) as platform:
        auth = {"Authorization": f"Bearer {platform.key}"}
        body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        codes = [httpx.post(platform.base + "/v1/chat/completions", json=body, headers=auth).status_code for _ in range(6)]
        assert codes == [200] + [429] * 5
        rows = platform.wait_rows(None, 3)
        time.sleep(0.3)  # any further row would be written by now
        assert [r.status for r in platform.usage_rows()] == ["success", "refused", "refused"]
        text = httpx.get(platform.base + "/metrics", headers=METRICS_AUTH).text
        assert re.search(r"^coderapi:usage_rows_unwritten_total 3\.0$", text, re.M), text[-600:]
        assert len(rows) == 3
