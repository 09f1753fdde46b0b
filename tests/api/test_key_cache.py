"""Inference keys are cached after their first lookup, yet a key disabled, deleted or changed
elsewhere (another gateway, the CLI: here a second AccountService on the same database, which this
app's cache never hears of) is refused or re-admitted as it is now, on the very next request."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from coderapi.services.accounts import AccountService
from coderapi.store.database import Database
from tests.api.conftest import ALIAS_ID, launch, make_account


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with launch(tmp_path_factory.mktemp("key-cache")) as running:
        yield running


def _elsewhere(platform):
    """The same database through another process's eyes: no shared cache, no shared objects."""
    return AccountService(Database(str(platform.services.db.url)), starting_credit=0)


def _ask(platform, key: str, **fields) -> httpx.Response:
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **fields}
    return httpx.post(platform.base + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_a_cached_key_disabled_or_deleted_elsewhere_is_refused_at_once(platform):
    account = make_account(platform)
    other = _elsewhere(platform)
    assert _ask(platform, account.key).status_code == 200  # looked up once, cached from now on
    assert _ask(platform, account.key).status_code == 200

    asyncio.run(other.keys.update_key(account.user_id, account.prefix, disabled=True))
    # Refused before any hold is taken (a bad body): still the key's refusal, not the body's 400.
    bad = _ask(platform, account.key, temperature=9)
    assert bad.status_code == 403 and _code(bad) == "key_disabled"
    asyncio.run(other.keys.update_key(account.user_id, account.prefix, disabled=False))
    assert _ask(platform, account.key).status_code == 200  # cached again
    asyncio.run(other.keys.update_key(account.user_id, account.prefix, disabled=True))
    refused = _ask(platform, account.key)
    assert refused.status_code == 403 and _code(refused) == "key_disabled"

    asyncio.run(other.keys.update_key(account.user_id, account.prefix, disabled=False))
    assert _ask(platform, account.key).status_code == 200

    asyncio.run(other.users.set_user_disabled(account.user_id, True))
    assert _code(_ask(platform, account.key)) == "user_disabled"
    asyncio.run(other.users.set_user_disabled(account.user_id, False))
    assert _ask(platform, account.key).status_code == 200

    asyncio.run(other.keys.delete_key(account.user_id, account.prefix))
    gone = _ask(platform, account.key)
    assert gone.status_code == 401 and gone.json()["error"]["type"] == "authentication_error"


def test_a_cached_key_changed_elsewhere_is_admitted_as_it_is_now(platform):
    account = make_account(platform)
    other = _elsewhere(platform)
    assert _ask(platform, account.key).status_code == 200

    # A spending limit of zero set elsewhere: the cached key had none, the hold sees the new one.
    asyncio.run(other.keys.update_key(account.user_id, account.prefix, limit_threshold="0", limit_retention="day"))
    limited = _ask(platform, account.key)
    assert limited.status_code == 403 and _code(limited) == "spending_limit_exceeded"
    asyncio.run(other.keys.update_key(account.user_id, account.prefix, limit_threshold=None))
    assert _ask(platform, account.key).status_code == 200

    asyncio.run(other.keys.update_key(account.user_id, account.prefix, scopes=[]))
    narrowed = _ask(platform, account.key)
    assert narrowed.status_code == 403 and _code(narrowed) == "missing_scope"



def test_credit_taken_back_elsewhere_is_seen_by_the_next_request(platform):
    account = make_account(platform)
    other = _elsewhere(platform)
    assert _ask(platform, account.key).status_code == 200  # the key now holds a credit lease here
    balance = asyncio.run(other.users.balance(account.user_id))
    asyncio.run(other.users.grant_credit(account.user_id, -balance, "taken back", "admin"))
    refused = _ask(platform, account.key)  # the lease went with the credit it was sized on
    assert refused.status_code == 403 and _code(refused) == "insufficient_quota"
