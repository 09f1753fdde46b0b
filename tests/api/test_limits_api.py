"""Money (403) and rate limits (429) before generation starts, and the x-ratelimit-* headers."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from tests.api.conftest import ALIAS_ID, make_account

USER = [{"role": "user", "content": "Hi"}]
RATE_HEADERS = [
    f"x-ratelimit-{kind}-{what}" for what in ("requests", "tokens") for kind in ("limit", "remaining", "reset")
]


def _has_rate_headers(headers) -> bool:
    return all(name in headers for name in RATE_HEADERS)


def _retrying_client(platform, key):
    return openai.OpenAI(base_url=platform.base + "/v1", api_key=key, max_retries=2, timeout=30)


def test_spending_limit_is_403_and_not_retried(platform):
    # The worst case of a short chat with the default budget (1024 tokens at $2/M) fits in $0.003;
    # one that may generate 2,000 tokens ($0.004) does not, whatever it would really cost.
    account = make_account(platform, limit_threshold=Decimal("0.003"), limit_retention="day")
    client = _retrying_client(platform, account.key)
    assert client.chat.completions.create(model=ALIAS_ID, messages=USER).choices
    assert platform.wait_rows(account.user_id, 1)[0].cost > 0
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=ALIAS_ID, messages=USER, max_tokens=2000)
    assert caught.value.status_code == 403 and caught.value.body["code"] == "spending_limit_exceeded"
    assert "spending limit" in caught.value.body["message"] and "may cost up to $0.004" in caught.value.body["message"]
    assert _has_rate_headers(caught.value.response.headers)
    rows = platform.wait_rows(account.user_id, 2)
    assert len(rows) == 2  # one row for the refusal: the SDK did not retry it
    assert (rows[1].status, rows[1].status_code, rows[1].error_code, rows[1].cost) == (
        "refused", 403, "spending_limit_exceeded", Decimal(0))
    # raising the limit lets the key work again
    platform.http(account.management_key).patch(f"/v1/keys/{account.prefix}", json={"limit": {"threshold": 10}})
    assert client.chat.completions.create(model=ALIAS_ID, messages=USER, max_tokens=2000).choices


def test_zero_threshold_refuses_from_the_first_request(platform):
    account = make_account(platform, limit_threshold=0, limit_retention="month")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        platform.client(account.key).completions.create(model=ALIAS_ID, prompt="def f():")
    assert caught.value.body["code"] == "spending_limit_exceeded"


def test_zero_balance_is_403_insufficient_quota_until_credit_is_granted(platform):
    account = make_account(platform)
    accounts = platform.services
    balance = platform.run(accounts.users.balance(account.user_id))
    assert balance == Decimal(platform.services.settings.starting_credit)  # new users get the starting credit
    platform.run(accounts.users.grant_credit(account.user_id, -balance, "test", "pytest"))
    client = _retrying_client(platform, account.key)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model=ALIAS_ID, messages=USER, stream=True)
    assert caught.value.body["code"] == "insufficient_quota" and caught.value.body["type"] == "insufficient_quota"
    assert len(platform.wait_rows(account.user_id, 1)) == 1
    platform.run(platform.services.billing.grant(account.user_id, "1.5", reason="top-up", granted_by="admin"))
    assert client.chat.completions.create(model=ALIAS_ID, messages=USER).choices
    rows = platform.wait_rows(account.user_id, 2)
    assert platform.run(accounts.users.balance(account.user_id)) == Decimal("1.5") - rows[1].cost  # debited


def test_requests_per_minute_is_429_with_retry_after(platform):
    account = make_account(platform)
    platform.run(platform.services.users.set_user_limits(account.user_id, rpm_limit=2, tpm_limit=None))
    client = platform.client(account.key)
    first = client.chat.completions.with_raw_response.create(model=ALIAS_ID, messages=USER)
    assert first.headers["x-ratelimit-limit-requests"] == "2" and first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == str(platform.services.settings.default_tpm)
    client.chat.completions.create(model=ALIAS_ID, messages=USER)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=ALIAS_ID, messages=USER)
    headers = caught.value.response.headers
    assert caught.value.body["code"] == "rate_limit_exceeded" and "requests per minute" in caught.value.body["message"]
    assert 1 <= int(headers["retry-after"]) <= 30 and int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-remaining-requests"] == "0" and _has_rate_headers(headers)
    rows = platform.wait_rows(account.user_id, 3)
    assert [(r.status, r.status_code) for r in rows] == [("success", 200), ("success", 200), ("refused", 429)]


def test_tokens_per_minute_is_429_and_settles_with_real_usage(platform):
    account = make_account(platform)
    platform.run(platform.services.users.set_user_limits(account.user_id, rpm_limit=None, tpm_limit=250))
    client = platform.client(account.key)
    long = [{"role": "user", "content": "repeat: " + "a" * 200}]
    # estimate: body/4 + 5 = about 70 tokens; really used: about 230 (byte-level prompt), settled at the end
    assert client.chat.completions.create(model=ALIAS_ID, messages=long, max_tokens=5).choices
    platform.wait_rows(account.user_id, 1)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=ALIAS_ID, messages=long, max_tokens=5)
    headers = caught.value.response.headers
    assert "tokens per minute" in caught.value.body["message"]
    assert headers["x-ratelimit-limit-tokens"] == "250" and int(headers["x-ratelimit-remaining-tokens"]) < 70


def test_rate_limit_headers_on_every_inference_answer(platform):
    account = make_account(platform)
    client = platform.client(account.key)
    ok = client.chat.completions.with_raw_response.create(model=ALIAS_ID, messages=USER)
    fim = client.completions.with_raw_response.create(model=ALIAS_ID, prompt="def add(a, b):", suffix="\n")
    assert _has_rate_headers(ok.headers) and _has_rate_headers(fim.headers)
    body = {"model": ALIAS_ID, "messages": USER, "stream": True}
    auth = {"Authorization": f"Bearer {account.key}"}
    with httpx.stream("POST", platform.base + "/v1/chat/completions", json=body, headers=auth) as streamed:
        assert streamed.status_code == 200 and _has_rate_headers(streamed.headers)
        assert list(streamed.iter_lines())[-2] == "data: [DONE]"
    errors = [
        ({"model": ALIAS_ID, "messages": USER, "temperature": 9}, account.key, 400),
        ({"model": "gpt-4o", "messages": USER}, account.key, 404),
        (b"{not json", account.key, 400),
        ({"model": ALIAS_ID, "messages": USER}, account.management_key, 403),
    ]
    for payload, key, status in errors:
        kwargs = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
        response = httpx.post(platform.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, **kwargs)
        assert response.status_code == status and _has_rate_headers(response.headers), (payload, response.headers)
    reset = ok.headers["x-ratelimit-reset-requests"]
    assert reset.endswith("s")  # e.g. 100ms, 1.5s
