"""Key management per the contract: /v1/keys, /v1/keys/{prefix}, /v1/key."""

from __future__ import annotations

import openai
import pytest

from tests.api.conftest import ALIAS_ID, make_account

USER = [{"role": "user", "content": "Hi"}]
KEY_FIELDS = {"name", "disabled", "prefix", "scopes", "limit", "created_at", "updated_at", "monthly_usage"}


@pytest.fixture
def account(platform):
    return make_account(platform)


@pytest.fixture(scope="module")
def shared_account(platform):
    return make_account(platform)


def test_create_list_get_update_delete(platform, account):
    api = platform.http(account.management_key)
    body = {
        "name": "20260202-key-for-llms", "limit": {"retention": "week", "threshold": 25},
        "scopes": ["model:chat", "model:responses", "model:embeddings"],
    }
    created = api.post("/v1/keys", json=body)
    assert created.status_code == 200, created.text
    data = created.json()["data"]
    assert set(data) == KEY_FIELDS | {"key"}
    assert data["name"] == body["name"] and data["disabled"] is False and data["scopes"] == body["scopes"]
    assert data["limit"] == {"retention": "week", "threshold": 25.0} and data["monthly_usage"] == 0
    assert data["created_at"].endswith("Z") and len(data["prefix"]) == 8 and data["key"][4:12] == data["prefix"]
    secret, prefix = data["key"], data["prefix"]
    assert created.headers["cache-control"] == "no-store"

    listed = api.get("/v1/keys").json()["data"]
    assert [k["prefix"] for k in listed] == [account.prefix, listed[1]["prefix"], prefix]  # oldest first
    assert all(set(k) == KEY_FIELDS for k in listed) and secret not in str(listed)
    assert platform.http(secret).get("/v1/key").json()["data"]["prefix"] == prefix

    patched = api.patch(f"/v1/keys/{prefix}", json={"name": "renamed", "limit": {"threshold": 5}}).json()["data"]
    assert patched["name"] == "renamed" and patched["limit"] == {"retention": "week", "threshold": 5.0}
    assert patched["updated_at"] >= patched["created_at"] and "key" not in patched

    put = api.put(f"/v1/keys/{prefix}", json={"name": "whole", "scopes": ["model:chat", "model:responses"]})
    assert put.json()["data"]["limit"] is None and put.json()["data"]["scopes"] == ["model:chat", "model:responses"]

    assert api.delete(f"/v1/keys/{prefix}").json() == {"data": {"prefix": prefix, "deleted": True}}
    assert api.get("/v1/keys").json()["data"][-1]["prefix"] != prefix
    with pytest.raises(openai.AuthenticationError):
        platform.client(secret).chat.completions.create(model=ALIAS_ID, messages=USER)
    assert api.delete(f"/v1/keys/{prefix}").status_code == 404


def test_create_with_empty_body_makes_a_chat_key(platform, account):
    response = platform.http(account.management_key).post("/v1/keys")
    data = response.json()["data"]
    assert response.status_code == 200 and data["scopes"] == ["model:chat"] and data["name"] is None
    assert "limit" not in data  # no limit: the creation answer leaves the (non-nullable) object out
    assert platform.client(data["key"]).chat.completions.create(model=ALIAS_ID, messages=USER).choices


def test_disable_and_enable_take_effect_on_the_next_request(platform, account):
    api = platform.http(account.management_key)
    assert api.patch(f"/v1/keys/{account.prefix}", json={"disabled": True}).json()["data"]["disabled"] is True
    with pytest.raises(openai.PermissionDeniedError) as caught:
        platform.client(account.key).chat.completions.create(model=ALIAS_ID, messages=USER)
    assert caught.value.body["code"] == "key_disabled"
    api.patch(f"/v1/keys/{account.prefix}", json={"disabled": False})
    assert platform.client(account.key).chat.completions.create(model=ALIAS_ID, messages=USER).choices


@pytest.mark.parametrize(
    ("method", "body", "param"),
    [
        ("post", {"kind": "management"}, "kind"),
        ("post", {"name": "x", "disabled": True}, "disabled"),  # not a creation field
        ("post", {"limit": {"retention": "year", "threshold": 1}}, "limit.retention"),
        ("post", {"limit": {"threshold": -1}}, "limit.threshold"),
        ("post", {"limit": {"threshold": "25"}}, "limit.threshold"),
        ("post", {"limit": {"threshold": 1, "currency": "EUR"}}, "limit.currency"),
        ("post", {"scopes": ["model:chat", "keys:manage"]}, "scopes"),
        ("post", {"scopes": "model:chat"}, "scopes"),
        ("post", {"name": 5}, "name"),
        # Control and invisible characters: an ESC sequence would reach the operator's terminal in
        # `coderapi keys list`; a bidi override or zero-width space disguises the name.
        ("post", {"name": "\u001b]0;owned\u0007\u001b[2J"}, "name"),
        ("post", {"name": "a\u0000b"}, "name"),
        ("post", {"name": "\u202edrow"}, "name"),
        ("post", {"name": "prod\u200b"}, "name"),
        ("post", {"name": "two\u2028lines"}, "name"),
        ("patch", {"name": "tab\there"}, "name"),
        ("patch", {"disabled": "yes"}, "disabled"),
        ("patch", {"disabled": None}, "disabled"),
        ("patch", {"limit": {"threshold": -0.01}}, "limit.threshold"),
        ("patch", {"prefix": "abcdefgh"}, "prefix"),
        ("put", {"limit": {"retention": "hourly"}}, "limit.retention"),
        ("put", {"scopes": ["model:everything"]}, "scopes"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(platform, shared_account, method, body, param):
    account = shared_account
    api = platform.http(account.management_key)
    path = "/v1/keys" if method == "post" else f"/v1/keys/{account.prefix}"
    response = api.request(method.upper(), path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_key_names_may_hold_spaces_and_any_script(platform, account):
    api = platform.http(account.management_key)
    name = "Büro laptop — 東京 🚀"
    created = api.post("/v1/keys", json={"name": name})
    assert created.status_code == 200 and created.json()["data"]["name"] == name


def test_malformed_and_missing_bodies(platform, account):
    api = platform.http(account.management_key)
    headers = {"Content-Type": "application/json"}
    assert api.post("/v1/keys", content=b"{", headers=headers).json()["error"]["code"] == "invalid_json"
    assert api.post("/v1/keys", content=b"[]", headers=headers).status_code == 400
    assert api.patch(f"/v1/keys/{account.prefix}", content=b"").status_code == 400


def test_inference_keys_and_missing_scopes_are_403(platform, account):
    inference = platform.http(account.key)
    for method, path in [("GET", "/v1/keys"), ("POST", "/v1/keys"), ("PATCH", f"/v1/keys/{account.prefix}"),
                         ("PUT", f"/v1/keys/{account.prefix}"), ("DELETE", f"/v1/keys/{account.prefix}")]:
        response = inference.request(method, path, json={})
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "management_key_required"
    accounts = platform.services
    _, reader = platform.run(accounts.keys.create_key(account.user_id, kind="management", scopes=["usage:read"]))
    refused = platform.http(reader).get("/v1/keys")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"
    assert platform.http(reader).get("/v2/usage").status_code == 200


def test_scopes_must_suit_the_key_kind(platform, account):
    management_prefix = account.management_key[4:12]
    api = platform.http(account.management_key)
    response = api.patch(f"/v1/keys/{management_prefix}", json={"scopes": ["model:chat"]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "scopes"
    assert api.get("/v1/keys").status_code == 200  # the management key kept its scopes


def test_get_key_answers_the_calling_key(platform, account):
    own = platform.http(account.key).get("/v1/key")
    assert own.status_code == 200 and own.json()["data"]["prefix"] == account.prefix
    assert set(own.json()["data"]) == KEY_FIELDS
    management = platform.http(account.management_key).get("/v1/key").json()["data"]
    assert management["prefix"] == account.management_key[4:12]
    assert platform.http("cdr-" + "x" * 40).get("/v1/key").status_code == 401


def test_tenant_isolation_of_keys(platform):
    a, b = make_account(platform), make_account(platform)
    as_b = platform.http(b.management_key)
    assert a.prefix not in str(as_b.get("/v1/keys").json())
    for method in ("PATCH", "PUT", "DELETE"):
        response = as_b.request(method, f"/v1/keys/{a.prefix}", json={"disabled": True})
        assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
    assert platform.client(a.key).chat.completions.create(model=ALIAS_ID, messages=USER).choices
    assert as_b.patch("/v1/keys/nonexist", json={}).status_code == 404
