"""/v2/usage, /v2/usage/detail, /v2/logs and /v1/billing/balance: the sums equal the rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import openai
import pytest

from tests.api.conftest import ALIAS_ID, SERVED_ID, make_account

USER = [{"role": "user", "content": "Hi"}]


def _traffic(platform, account) -> int:
    """Successes, a stream, errors and refusals; returns how many inference requests were made."""
    client = platform.client(account.key)
    client.chat.completions.create(model=ALIAS_ID, messages=USER, extra_headers={"X-Client-Request-Id": "mine-1"})
    client.chat.completions.create(model=SERVED_ID, messages=[{"role": "user", "content": "repeat: hello"}])
    list(client.chat.completions.create(model=ALIAS_ID, messages=USER, stream=True))
    client.completions.create(model=ALIAS_ID, prompt="def f():")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=ALIAS_ID, messages=USER, temperature=5)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=USER)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: abc fail after 2"}])
    with pytest.raises(openai.PermissionDeniedError):
        platform.client(account.management_key).chat.completions.create(model=ALIAS_ID, messages=USER)
    return 8


@pytest.fixture(scope="module")
def busy(platform):
    account = make_account(platform)
    made = _traffic(platform, account)
    rows = platform.wait_rows(account.user_id, made)
    assert len(rows) == made  # exactly one row per request
    return account, rows


def test_usage_equals_the_rows(platform, busy):
    account, rows = busy
    answer = platform.http(account.management_key).get("/v2/usage", params={"period": "24h"}).json()
    assert set(answer) == {"api_key_prefix", "start", "end", "spend", "currency", "requests"}
    assert answer["api_key_prefix"] is None and answer["currency"] == "USD"
    assert Decimal(str(answer["spend"])) == sum(r.cost for r in rows) > 0
    assert answer["requests"] == sum(r.status == "success" for r in rows) == 4
    failed = [r for r in rows if r.status != "success"]
    assert all(r.cost == 0 for r in failed)  # failed and refused requests cost nothing
    assert platform.run(platform.services.users.balance(account.user_id)) == Decimal(5) - sum(r.cost for r in rows)


def test_usage_of_one_key_and_of_a_window(platform, busy):
    account, rows = busy
    api = platform.http(account.management_key)
    own = api.get("/v2/usage", params={"key_prefix": account.prefix}).json()
    assert own["api_key_prefix"] == account.prefix and own["requests"] == 4
    management_prefix = account.management_key[4:12]
    assert api.get("/v2/usage", params={"key_prefix": management_prefix}).json()["requests"] == 0
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    empty = api.get("/v2/usage", params={"start": later.isoformat(), "end": (later + timedelta(days=1)).isoformat()})
    assert empty.json()["requests"] == 0 and empty.json()["spend"] == 0
    naive = api.get("/v2/usage", params={"start": "2020-01-01T00:00:00", "end": "2020-02-01T00:00:00"}).json()
    assert naive["start"] == "2020-01-01T00:00:00.000Z"


def test_usage_detail_models_and_groups(platform, busy):
    account, rows = busy
    api = platform.http(account.management_key)
    detail = api.get("/v2/usage/detail", params={"period": "7d"}).json()
    assert "groups" not in detail
    models = {m["model"]: m for m in detail["models"]}
    assert models[ALIAS_ID]["requests"] == 3 and models[SERVED_ID]["requests"] == 1
    assert detail["models"][0]["spend"] >= detail["models"][-1]["spend"]
    grouped = api.get("/v2/usage/detail", params={"period": "7d", "group_by": "day,model", "tz": "Europe/Berlin"}).json()
    groups = grouped["groups"]
    assert sum(g["requests"]["total"] for g in groups) == len(rows)
    assert sum(g["requests"]["charged"] for g in groups) == grouped["requests"] == 4
    assert sum(g["requests"]["failed"] for g in groups) == 4
    assert sum(g["tokens"]["output"] for g in groups) == sum(r.completion_tokens for r in rows)
    assert Decimal(str(round(sum(g["spend"] for g in groups), 6))) == sum(r.cost for r in rows)
    assert all(set(g) == {"day", "model", "spend", "tokens", "requests"} for g in groups)
    by_day = api.get("/v2/usage/detail", params={"period": "3d", "group_by": "day"}).json()["groups"]
    assert len(by_day) in (3, 4) and all("model" not in g for g in by_day)  # every day, zeros included


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v2/usage", {"period": "7w"}, "period"),
        ("/v2/usage", {"period": "0d"}, "period"),
        ("/v2/usage", {"period": "93d"}, "period"),
        ("/v2/usage", {"period": "1d", "start": "2026-01-01"}, "period"),
        ("/v2/usage", {"start": "2026-01-01"}, "end"),
        ("/v2/usage", {"start": "2026-02-01", "end": "2026-01-01"}, "end"),
        ("/v2/usage", {"start": "2026-01-01", "end": "2026-06-01"}, "end"),
        ("/v2/usage", {"start": "yesterday", "end": "2026-01-01"}, "start"),
        ("/v2/usage", {"group_by": "day"}, "group_by"),
        ("/v2/usage", {"colour": "red"}, "colour"),
        ("/v2/usage/detail", {"group_by": "week"}, "group_by"),
        ("/v2/usage/detail", {"group_by": "day", "tz": "utc"}, "tz"),
        ("/v2/usage/detail", {"group_by": "day", "tz": "+05:00"}, "tz"),
        ("/v2/logs", {"status": "succeeded,failed"}, "status"),
        ("/v2/logs", {"limit": 0}, "limit"),
        ("/v2/logs", {"limit": 101}, "limit"),
        ("/v2/logs", {"limit": "ten"}, "limit"),
        ("/v2/logs", {"offset": -1}, "offset"),
        ("/v2/logs", {"offset": 2**70}, "offset"),  # was a 500: too large for the database's OFFSET
        # Instants outside the years 1970 to 8999 (UTC): each was a 500, an overflow converting to UTC
        # or stepping to the next local day.
        *[(path, {"start": "0001-01-01T00:00:00+01:00", "end": "0001-01-02T00:00:00Z"}, "start")
          for path in ("/v2/usage", "/v2/usage/detail", "/v2/logs")],
        *[(path, {"start": "9999-12-31T00:00:00Z", "end": "9999-12-31T23:59:59-01:00"}, "start")
          for path in ("/v2/usage", "/v2/usage/detail", "/v2/logs")],
        ("/v2/usage/detail", {"start": "9999-12-30T00:00:00Z", "end": "9999-12-31T23:59:59.999999Z",
                              "group_by": "day"}, "start"),
        ("/v2/usage/detail", {"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z",
                              "group_by": "day", "tz": "America/New_York"}, "start"),
        ("/v2/usage", {"start": "1969-12-31T23:59:59Z", "end": "1970-01-02T00:00:00Z"}, "start"),
        ("/v2/usage", {"start": "8999-12-31T00:00:00Z", "end": "8999-12-31T23:00:00-01:00"}, "end"),
    ],
)
def test_bad_queries_are_400(platform, busy, path, params, param):
    response = platform.http(busy[0].management_key).get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("tz", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_windows_at_the_ends_of_the_supported_years_are_answered(platform, busy, tz):
    api = platform.http(busy[0].management_key)
    for start, end in [("1970-01-01T00:00:00Z", "1970-01-02T23:59:59Z"),
                       ("8999-12-30T00:00:00Z", "8999-12-31T23:59:59.999999Z")]:
        detail = api.get("/v2/usage/detail", params={"start": start, "end": end, "group_by": "day", "tz": tz})
        assert detail.status_code == 200, detail.text
        assert sum(g["requests"]["total"] for g in detail.json()["groups"]) == 0


def test_logs_filters_and_pagination(platform, busy):
    account, rows = busy
    api = platform.http(account.management_key)
    everything = api.get("/v2/logs", params={"period": "1d"}).json()
    assert everything["pagination"] == {"limit": 50, "offset": 0, "total": len(rows), "has_more": False}
    newest = everything["data"][0]
    assert set(newest) == {"created", "status", "origin", "model", "cost", "tokens", "request_id", "inference_id",
                           "client_request_id"}
    assert [e["request_id"] for e in everything["data"]] == [r.request_id for r in reversed(rows)]
    first = everything["data"][-1]
    assert first["client_request_id"] == "mine-1" and first["status"] == "succeeded" and first["origin"] == "api"
    assert first["cost"]["credits"] == round(first["cost"]["usd"] * 2_000_000)
    failed = api.get("/v2/logs", params={"status": "failed"}).json()
    assert failed["pagination"]["total"] == 4 and all(e["cost"]["usd"] == 0 for e in failed["data"])
    both = api.get("/v2/logs", params=[("status", "succeeded"), ("status", "failed")]).json()
    assert both["pagination"]["total"] == len(rows)
    served = api.get("/v2/logs", params={"model": SERVED_ID}).json()
    assert served["pagination"]["total"] == 1
    bare = api.get("/v2/logs", params={"model": SERVED_ID.split("/")[1]}).json()
    assert bare["pagination"]["total"] == 1
    assert api.get("/v2/logs", params={"model": f"{SERVED_ID},{ALIAS_ID}"}).json()["pagination"]["total"] == 0
    page = api.get("/v2/logs", params={"limit": 3, "offset": 3}).json()
    assert page["pagination"] == {"limit": 3, "offset": 3, "total": len(rows), "has_more": True}
    assert [e["request_id"] for e in page["data"]] == [e["request_id"] for e in everything["data"][3:6]]
    last = api.get("/v2/logs", params={"limit": 3, "offset": 6}).json()
    assert len(last["data"]) == 2 and last["pagination"]["has_more"] is False
    key_only = api.get("/v2/logs", params={"key_prefix": account.management_key[4:12]}).json()
    assert key_only["pagination"]["total"] == 1  # the management key's refused inference call


def test_tenant_isolation_of_usage_and_logs(platform, busy):
    account, _ = busy
    stranger = make_account(platform)
    api = platform.http(stranger.management_key)
    assert api.get("/v2/usage").json()["requests"] == 0
    assert api.get("/v2/logs").json()["pagination"]["total"] == 0
    for path in ("/v2/usage", "/v2/usage/detail", "/v2/logs"):
        response = api.get(path, params={"key_prefix": account.prefix})
        assert response.status_code == 404, path
    assert api.get("/v2/usage", params={"key_prefix": "zzzzzzzz"}).status_code == 404


def test_inference_keys_cannot_read_usage_or_billing(platform, busy):
    account, _ = busy
    for path in ("/v2/usage", "/v2/usage/detail", "/v2/logs", "/v1/billing/balance"):
        response = platform.http(account.key).get(path)
        assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error", path
    assert httpx.get(platform.base + "/v2/usage").status_code == 401


def test_billing_balance(platform, busy):
    account, rows = busy
    answer = platform.http(account.management_key).get("/v1/billing/balance").json()
    assert set(answer) == {"balance", "lowBalance", "lowBalanceThreshold", "lastUpdated", "autoDebitStatus",
                           "status", "statusExplanation"}
    expected = (Decimal(5) - sum(r.cost for r in rows)) * 2_000_000
    assert answer["balance"] == int(expected.to_integral_value())
    assert answer["lowBalance"] is False and answer["status"] == "current" and answer["lastUpdated"].endswith("Z")


def test_dashboard_reads_the_same_numbers(platform, busy):
    """The service methods the dashboard pages call agree with the rows and the API."""
    from coderapi.services.usage_window import Window
    from coderapi.store.tables import utcnow

    account, rows = busy
    reports = platform.services.reports
    window = Window.last(timedelta(days=7), utcnow())
    days = platform.run(reports.series(account.user_id, window, by=("day",)))
    assert len(days) in (8, 9) and sum(d.totals.requests for d in days) == len(rows)  # every day, zeros included
    per_key = platform.run(reports.series(account.user_id, window, by=("key",)))
    assert {g.key_prefix: g.totals.requests for g in per_key} == {account.prefix: 7, account.management_key[4:12]: 1}
    charges = platform.run(reports.recent_charges(account.user_id, limit=10))
    assert [c.request_id for c in charges] == [r.request_id for r in reversed(rows) if r.cost > 0]
    credits = platform.run(reports.credit_history(account.user_id))
    assert [(c.amount, c.reason) for c in credits] == [(Decimal(5), "starting credit")]
    logs = platform.run(reports.logs(account.user_id, window, statuses=["refused", "error"], limit=100))
    assert logs.total == 4 and {e.status for e in logs.items} == {"refused", "error"}
    prices = platform.services.billing.prices()
    assert prices[0].input_per_million == Decimal("1.0") and ALIAS_ID in prices[0].aliases
