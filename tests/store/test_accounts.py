"""AccountService against a temporary SQLite file: users, keys, authentication, money."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from coderapi import crud
from coderapi.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound, PermissionDenied
from coderapi.services import accounts as accounts_module
from coderapi.services import keygen, passwords
from coderapi.services.accounts import AccountService, KeyInfo, UsageRecord, UserInfo
from coderapi.services.spending import PeriodSpend
from tests.clock import FixedClock

UTC = timezone.utc


@pytest.fixture
def clock():
    return FixedClock(datetime(2025, 7, 10, 12, 0, tzinfo=UTC))  # a Thursday


@pytest.fixture
def svc(db, clock):
    return AccountService(db, starting_credit=5.0, clock=clock)


async def _user_and_key(svc, email="dev@example.com", **key_fields):
    user = await svc.signups.create_user(email, "correct horse")
    info, secret = await svc.keys.create_key(user.id, name="laptop", **key_fields)
    return user, info, secret


def _usage(user_id, key: KeyInfo | None, cost, **extra) -> UsageRecord:
    return UsageRecord(
        request_id="req-1", user_id=user_id, key_id=key.id if key else None,
        key_prefix=key.prefix if key else None, model="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        endpoint="chat.completions", prompt_tokens=10, completion_tokens=5, cost=cost, **extra,
    )


async def test_create_user_normalises_email_and_grants_starting_credit(svc):
    user = await svc.signups.create_user("  Dev@Example.COM ", "long enough")
    assert isinstance(user, UserInfo)
    assert (user.email, user.role, user.disabled) == ("dev@example.com", "user", False)
    assert user.balance == Decimal("5") == await svc.users.balance(user.id)
    assert user.created_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("email", "password", "role", "param"),
    [("not-an-email", "long enough", "user", "email"), ("a@b.c", "short", "user", "password"),
     ("a@b.c", "long enough", "root", "role")],
)
async def test_create_user_validation(svc, email, password, role, param):
    with pytest.raises(InvalidRequest) as caught:
        await svc.signups.create_user(email, password, role=role)
    assert caught.value.param == param


async def test_duplicate_email_conflicts(svc):
    await svc.signups.create_user("dev@example.com", "long enough")
    with pytest.raises(Conflict):
        await svc.signups.create_user("DEV@example.com", "another one")


async def test_passwords_are_argon2id_and_verified(svc, db):
    user = await svc.signups.create_user("dev@example.com", "correct horse")
    with db.session() as session:
        stored = crud.users.get(session, user.id).password_hash
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert (await svc.signups.verify_password("DEV@example.com", "correct horse")).id == user.id
    assert await svc.signups.verify_password("dev@example.com", "wrong horse") is None
    assert await svc.signups.verify_password("nobody@example.com", "correct horse") is None
    assert await svc.signups.verify_password("garbage", "correct horse") is None
    await svc.users.set_user_disabled(user.id, True)
    assert await svc.signups.verify_password("dev@example.com", "correct horse") is None


async def test_unknown_email_still_costs_an_argon2_check(svc, monkeypatch):
    checked = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda h, p: checked.append(h) or real(h, p))
    assert await svc.signups.verify_password("nobody@example.com", "whatever!") is None
    assert checked == [None]  # a dummy hash was verified in its place


async def test_work_runs_off_the_event_loop(svc, monkeypatch):
    threads = []
    real = passwords.hash_password
    monkeypatch.setattr(passwords, "hash_password", lambda p: threads.append(threading.current_thread()) or real(p))
    await svc.signups.create_user("dev@example.com", "long enough")
    assert threads and threads[0] is not threading.main_thread()


async def test_key_shape_and_storage(svc, db_path):
    user, info, secret = await _user_and_key(svc)
    assert secret.startswith("cdr-") and len(secret) == 44 and keygen.is_well_formed(secret)
    assert info.prefix == secret[4:12] and info.scopes == ("model:chat",) and info.kind == "inference"
    assert not hasattr(info, "secret") and secret not in repr(info)
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert secret.encode() not in raw and secret[12:].encode() not in raw
    assert keygen.hash_secret(secret).encode() in raw


async def test_management_keys_get_management_scopes(svc):
    user = await svc.signups.create_user("ops@example.com", "long enough")
    info, _ = await svc.keys.create_key(user.id, kind="management")
    assert info.scopes == accounts_module.DEFAULT_SCOPES["management"]
    assert set(info.scopes) == {"keys:manage", "usage:read", "billing:read"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"kind": "root"}, "kind"), ({"scopes": ["model:nope"]}, "scopes"),
     ({"limit_retention": "year"}, "limit.retention"), ({"limit_threshold": -1}, "limit.threshold"),
     ({"name": "x" * 200}, "name")],
)
async def test_create_key_validation(svc, fields, param):
    user = await svc.signups.create_user("dev@example.com", "long enough")
    with pytest.raises(InvalidRequest) as caught:
        await svc.keys.create_key(user.id, **fields)
    assert caught.value.param == param


async def test_create_key_for_missing_user(svc):
    with pytest.raises(NotFound):
        await svc.keys.create_key(999)


async def test_prefix_collision_draws_a_new_secret(svc, monkeypatch):
    user, first, secret = await _user_and_key(svc)
    clash = "cdr-" + first.prefix + "Z" * 32
    fresh = iter([clash, keygen.generate_secret()])
    monkeypatch.setattr(keygen, "generate_secret", lambda: next(fresh))
    info, second = await svc.keys.create_key(user.id)
    assert second != clash and info.prefix != first.prefix


async def test_authenticate_key(svc, clock):
    user, info, secret = await _user_and_key(svc, limit_threshold=3, limit_retention="day")
    principal = await svc.keys.authenticate_key(secret)
    assert dataclasses.is_dataclass(principal)
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.role = "admin"
    assert (principal.user_id, principal.email, principal.key_id) == (user.id, user.email, info.id)
    assert (principal.key_prefix, principal.key_kind, principal.scopes) == (info.prefix, "inference", ("model:chat",))
    assert (principal.rpm_limit, principal.tpm_limit) == (None, None)
    assert (principal.limit_threshold, principal.limit_retention) == (Decimal(3), "day")


@pytest.mark.parametrize("secret", ["", "cdr-", "sk-abc", "cdr-" + "!" * 40, "cdr-" + "a" * 41, None])
async def test_malformed_keys_are_refused(svc, secret):
    with pytest.raises(AuthenticationFailed, match="Invalid API key"):
        await svc.keys.authenticate_key(secret)


async def test_unknown_key_and_hash_compare(svc, monkeypatch):
    _, _, secret = await _user_and_key(svc)
    with pytest.raises(AuthenticationFailed):
        await svc.keys.authenticate_key(keygen.generate_secret())
    compared = []
    real = keygen.hashes_match
    monkeypatch.setattr(keygen, "hashes_match", lambda a, b: compared.append((a, b)) or real(a, b))
    await svc.keys.authenticate_key(secret)
    assert compared == [(keygen.hash_secret(secret), keygen.hash_secret(secret))]
    monkeypatch.setattr(keygen, "hashes_match", lambda a, b: False)
    with pytest.raises(AuthenticationFailed):
        await svc.keys.authenticate_key(secret)


async def test_disabled_key_and_disabled_user(svc):
    user, info, secret = await _user_and_key(svc)
    await svc.keys.set_key_disabled(user.id, info.prefix, True)
    with pytest.raises(PermissionDenied) as caught:
        await svc.keys.authenticate_key(secret)
    assert caught.value.code == "key_disabled"
    await svc.keys.set_key_disabled(user.id, info.prefix, False)
    await svc.users.set_user_disabled(user.id, True)
    with pytest.raises(PermissionDenied) as caught:
        await svc.keys.authenticate_key(secret)
    assert caught.value.code == "user_disabled"
    await svc.users.set_user_disabled(user.id, False)
    assert (await svc.keys.authenticate_key(secret)).key_id == info.id


async def test_last_used_is_stamped_at_most_once_a_minute(svc, clock):
    user, info, secret = await _user_and_key(svc)
    start = clock.now
    await svc.keys.authenticate_key(secret)
    assert (await svc.keys.get_key(user.id, info.prefix)).last_used_at == start
    clock.now = start + timedelta(seconds=30)
    await svc.keys.authenticate_key(secret)
    assert (await svc.keys.get_key(user.id, info.prefix)).last_used_at == start
    clock.now = start + timedelta(seconds=61)
    await svc.keys.authenticate_key(secret)
    assert (await svc.keys.get_key(user.id, info.prefix)).last_used_at == clock.now


async def test_list_get_update_delete(svc, clock):
    user, first, _ = await _user_and_key(svc)
    second, _ = await svc.keys.create_key(user.id, name="ci", scopes=["model:chat", "model:responses", "model:ocr"])
    assert [k.prefix for k in await svc.keys.list_keys(user.id)] == [first.prefix, second.prefix]
    clock.now += timedelta(hours=1)
    updated = await svc.keys.update_key(
        user.id, second.prefix, name="renamed", scopes=["model:chat", "model:responses"],
        limit_threshold=25, limit_retention="month",
    )
    assert (updated.name, updated.scopes) == ("renamed", ("model:chat", "model:responses"))
    assert (updated.limit_threshold, updated.limit_retention) == (Decimal(25), "month")
    assert updated.updated_at == clock.now and updated.created_at == second.created_at
    cleared = await svc.keys.update_key(user.id, second.prefix, limit_threshold=None, scopes=None)  # narrows here
    assert cleared.limit_threshold is None and cleared.scopes == ("model:chat",)
    with pytest.raises(PermissionDenied) as widened:  # scopes may only shrink
        await svc.keys.update_key(user.id, second.prefix, scopes=["model:chat", "model:responses"])
    assert widened.value.param == "scopes"
    with pytest.raises(InvalidRequest) as caught:
        await svc.keys.update_key(user.id, first.prefix, prefix="zzzzzzzz")
    assert caught.value.param == "prefix"
    await svc.keys.delete_key(user.id, first.prefix)
    assert [k.prefix for k in await svc.keys.list_keys(user.id)] == [second.prefix]
    with pytest.raises(NotFound):
        await svc.keys.get_key(user.id, first.prefix)


async def test_tenant_isolation(svc):
    alice, key, secret = await _user_and_key(svc, "alice@example.com")
    bob = await svc.signups.create_user("bob@example.com", "long enough")
    for attempt in (
        svc.keys.get_key(bob.id, key.prefix),
        svc.keys.update_key(bob.id, key.prefix, disabled=True),
        svc.keys.set_key_disabled(bob.id, key.prefix, True),
        svc.keys.delete_key(bob.id, key.prefix),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert await svc.keys.list_keys(bob.id) == []
    assert (await svc.keys.authenticate_key(secret)).user_id == alice.id


async def test_resolve_key_by_prefix_or_secret(svc):
    user, info, secret = await _user_and_key(svc)
    assert (await svc.keys.resolve_key(info.prefix)).id == info.id
    assert (await svc.keys.resolve_key(secret)).user_id == user.id
    with pytest.raises(NotFound):
        await svc.keys.resolve_key("zzzzzzzz")
    with pytest.raises(InvalidRequest):
        await svc.keys.resolve_key("nonsense!")


async def test_record_usage_debits_the_balance_once(svc):
    user, info, _ = await _user_and_key(svc)
    event_id = await svc.users.record_usage(_usage(user.id, info, 0.000123))
    assert isinstance(event_id, int)
    await svc.users.record_usage(_usage(user.id, None, Decimal("1"), status="error", status_code=500))
    assert await svc.users.balance(user.id) == Decimal("3.999877")
    assert (await svc.keys.get_key(user.id, info.prefix)).monthly_usage == Decimal("0.000123")
    with pytest.raises(ValueError):
        _usage(user.id, info, 0, status="weird")


async def test_spend_in_period(svc, db, clock):
    user, info, _ = await _user_and_key(svc)
    moments = {"this morning": 0.5, "monday": 1.0, "first of month": 2.0, "last month": 4.0}
    times = [clock.now - timedelta(hours=2), datetime(2025, 7, 7, 1, tzinfo=UTC),
             datetime(2025, 7, 1, tzinfo=UTC), datetime(2025, 6, 30, 23, 59, tzinfo=UTC)]
    now = clock.now
    for when, cost in zip(times, moments.values()):
        clock.now = when
        await svc.users.record_usage(_usage(user.id, info, cost))
    clock.now = now
    spend = PeriodSpend(db, clock)  # what spending limits check
    spent = {r: await spend.spent(info.id, info.prefix, r) for r in ("day", "week", "month", "no_reset")}
    assert spent == {"day": Decimal("0.5"), "week": Decimal("1.5"), "month": Decimal("3.5"), "no_reset": Decimal("7.5")}
    assert [k.monthly_usage for k in await svc.keys.list_keys(user.id)] == [Decimal("3.5")]


async def test_grant_credit(svc):
    user = await svc.signups.create_user("dev@example.com", "long enough")
    assert await svc.users.grant_credit(user.id, 10, "top-up", "admin@localhost") == Decimal("15")
    assert await svc.users.grant_credit(user.id, "-2.5", "refund", "cli") == Decimal("12.5")
    for bad in (0, "abc", float("nan")):
        with pytest.raises(InvalidRequest):
            await svc.users.grant_credit(user.id, bad, "x", "cli")
    with pytest.raises(NotFound):
        await svc.users.grant_credit(999, 1, "x", "cli")
    with pytest.raises(NotFound):
        await svc.users.balance(999)


async def test_grants_keep_a_balance_within_the_exact_range(svc):
    """Balances stay within ±1e9, where SQLite's double keeps all six decimals: a grant past it is
    refused, balance and ledger untouched; up to it, every millionth is kept."""
    user = await svc.signups.create_user("rich@example.com", "long enough")  # $5 starting credit
    assert await svc.users.grant_credit(user.id, "999999994.999999", "top-up", "cli") == Decimal("999999999.999999")
    with pytest.raises(InvalidRequest) as caught:
        await svc.users.grant_credit(user.id, "0.000002", "one more", "cli")
    assert caught.value.param == "amount" and "1,000,000,000" in caught.value.message
    assert await svc.users.balance(user.id) == Decimal("999999999.999999")
    assert await svc.users.grant_credit(user.id, "-1000000000", "back", "cli") == Decimal("-0.000001")
    with pytest.raises(InvalidRequest):
        await svc.users.grant_credit(user.id, "-1000000000", "too far", "cli")
    assert await svc.users.balance(user.id) == Decimal("-0.000001")


async def test_bootstrap_admin_only_once(svc):
    secret = await svc.signups.bootstrap_admin()
    assert secret and keygen.is_well_formed(secret)
    principal = await svc.keys.authenticate_key(secret)
    assert (principal.email, principal.role, principal.key_kind) == ("admin@localhost", "admin", "inference")
    assert await svc.signups.bootstrap_admin() is None
    assert len(await svc.users.list_users()) == 1


async def test_bootstrap_skips_a_database_with_users(svc):
    await svc.signups.create_user("dev@example.com", "long enough")
    assert await svc.signups.bootstrap_admin() is None


async def test_concurrent_bootstraps_make_one_admin(db, clock):
    services = [AccountService(db, starting_credit=0, clock=clock) for _ in range(4)]
    results = await asyncio.gather(*(s.signups.bootstrap_admin() for s in services))
    assert sum(r is not None for r in results) == 1
    assert len(await services[0].users.list_users()) == 1


async def test_user_lookups(svc):
    user = await svc.signups.create_user("dev@example.com", "long enough", role="admin")
    assert (await svc.users.get_user(user.id)).role == "admin"
    assert (await svc.users.get_user_by_email("DEV@example.com")).id == user.id
    with pytest.raises(NotFound):
        await svc.users.get_user_by_email("nobody@example.com")
    with pytest.raises(NotFound):
        await svc.users.get_user(999)
