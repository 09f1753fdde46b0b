"""What a management key (or a user) cannot do to get more than they were given: widen a key's
scopes, hold unlimited keys, multiply rate limits with more keys, or set a spending limit the
store would keep as another one."""

from __future__ import annotations

from decimal import Decimal

import pytest

from coderapi.errors import InvalidRequest, PermissionDenied
from tests.api.conftest import ALIAS_ID, launch, make_account

USER = [{"role": "user", "content": "Hi"}]
MAX_KEYS = 4
USER_RPM = 3


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A platform with a low key cap and a low per-user RPM ceiling."""
    with launch(tmp_path_factory.mktemp("capped"), max_keys_per_user=MAX_KEYS, default_user_rpm=USER_RPM) as running:
        yield running


def test_scopes_null_cannot_widen_a_narrowed_key(platform):
    account = make_account(platform, scopes=["model:embeddings"])
    api = platform.http(account.management_key)
    response = api.patch(f"/v1/keys/{account.prefix}", json={"scopes": None})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["param"] == "scopes" and response.json()["error"]["code"] == "scopes_widened"
    wider = api.patch(f"/v1/keys/{account.prefix}", json={"scopes": ["model:embeddings", "model:chat"]})
    assert wider.status_code == 403 and wider.json()["error"]["param"] == "scopes"
    put = api.put(f"/v1/keys/{account.prefix}", json={"name": "renamed"})  # scopes left out: kept
    assert put.status_code == 200 and put.json()["data"]["scopes"] == ["model:embeddings"]
    assert platform.http(account.key).post("/v1/chat/completions", json={"model": ALIAS_ID, "messages": USER}).status_code == 403


def test_scopes_can_shrink(platform):
    account = make_account(platform, scopes=["model:chat", "model:embeddings"])
    api = platform.http(account.management_key)
    response = api.patch(f"/v1/keys/{account.prefix}", json={"scopes": ["model:chat"]})
    assert response.status_code == 200 and response.json()["data"]["scopes"] == ["model:chat"]


@pytest.mark.parametrize("threshold", [0.0000001, 1.0000001, 12.3456789])
def test_a_limit_the_money_column_cannot_keep_is_400(platform, threshold):
    account = make_account(platform)
    api = platform.http(account.management_key)
    for response in (
        api.post("/v1/keys", json={"limit": {"threshold": threshold}}),
        api.patch(f"/v1/keys/{account.prefix}", json={"limit": {"threshold": threshold}}),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "limit.threshold"
    assert api.get("/v1/keys").json()["data"][0]["limit"] is None  # nothing stored
    with pytest.raises(InvalidRequest) as caught:  # the dashboard's path: the service itself
        platform.run(platform.services.keys.create_key(account.user_id, limit_threshold=str(threshold)))
    assert caught.value.param == "limit.threshold"


def test_six_decimals_are_kept_exactly(platform):
    account = make_account(platform)
    response = platform.http(account.management_key).post("/v1/keys", json={"limit": {"threshold": 0.000001}})
    assert response.status_code == 200 and response.json()["data"]["limit"]["threshold"] == 0.000001


@pytest.mark.parametrize("amount", ["0.0000001", "1.0000001", "1e13", "NaN", "100000000000.000001", "1000000000.000001"])
def test_credit_grants_the_money_column_cannot_keep_are_refused(platform, amount):
    account = make_account(platform)
    accounts = platform.services
    before = platform.run(accounts.users.balance(account.user_id))
    with pytest.raises(InvalidRequest) as caught:
        platform.run(accounts.users.grant_credit(account.user_id, amount, "test", "pytest"))
    assert caught.value.param == "amount"
    assert platform.run(accounts.users.balance(account.user_id)) == before
    assert platform.run(accounts.users.grant_credit(account.user_id, "0.000001", "test", "pytest")) == before + Decimal("0.000001")


def test_keys_per_user_are_capped(capped):
    account = make_account(capped)  # an inference key and a management key: 2 of MAX_KEYS
    api = capped.http(account.management_key)
    for _ in range(MAX_KEYS - 2):
        assert api.post("/v1/keys").status_code == 200
    refused = api.post("/v1/keys")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "too_many_keys"
    assert len(api.get("/v1/keys").json()["data"]) == MAX_KEYS
    with pytest.raises(PermissionDenied):  # the dashboard creates keys through the same service
        capped.run(capped.services.keys.create_key(account.user_id, name="one more"))
    api.delete(f"/v1/keys/{account.prefix}")
    assert api.post("/v1/keys").status_code == 200  # a freed slot can be used again


def test_more_keys_do_not_multiply_the_rate_limit(capped):
    account = make_account(capped)
    second = capped.http(account.management_key).post("/v1/keys").json()["data"]["key"]
    answers = []
    for key in (account.key, second, account.key, second):
        answers.append(capped.http(key).post("/v1/chat/completions", json={"model": ALIAS_ID, "messages": USER}))
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert "your account" in refused.json()["error"]["message"] and "retry-after" in refused.headers
    assert refused.headers["x-ratelimit-limit-requests"] == str(capped.services.settings.default_rpm)  # the key's own
