"""Dashboard pages over real HTTP: keys (shown once, tenant isolation, on/off), admin-only pages,
the docs page, and what every page sends (security headers, nothing from a CDN)."""

from __future__ import annotations

import re

import openai
import pytest
from sqlalchemy import MetaData, select

from tests.api.dashboard_site import site  # noqa: F401  (the fixture)

PAGES = ["/", "/keys", "/usage", "/logs", "/playground", "/billing", "/docs"]


def _user_id(site, email: str) -> int:
    return site.run(site.services.users.get_user_by_email(email)).id


def _database_text(site) -> str:
    metadata = MetaData()
    metadata.reflect(site.services.db.engine)
    with site.services.db.engine.connect() as connection:
        return "\n".join(
            repr(row) for table in metadata.sorted_tables for row in connection.execute(select(table))
        )


def test_a_key_secret_is_shown_once_and_kept_nowhere(site):
    browser = site.user("once@example.com")
    secret = browser.create_key("laptop")
    page = browser.get("/keys")
    assert secret[4:12] in page.text and secret not in page.text
    assert page.headers["cache-control"] == "no-store"
    stored = _database_text(site)
    assert secret not in stored and secret[4:] not in stored
    assert browser.session not in stored  # sessions are kept as hashes too


def test_toggling_a_key_takes_effect_on_the_next_request(site):
    browser = site.user("toggle@example.com")
    secret = browser.create_key("svc")
    prefix = secret[4:12]
    assert "Hello" in site.ask(secret)
    off = browser.post(f"/keys/{prefix}/state", {"disabled": "true"}, token_from="/keys")
    assert off.status_code == 303
    with pytest.raises(openai.PermissionDeniedError):
        site.ask(secret)
    browser.post(f"/keys/{prefix}/state", {"disabled": "false"}, token_from="/keys")
    assert "Hello" in site.ask(secret)
    browser.post(f"/keys/{prefix}/delete", token_from="/keys")
    with pytest.raises(openai.AuthenticationError):
        site.ask(secret)


def test_another_user_cannot_touch_a_key_by_its_prefix(site):
    alice, bob = site.user("alice@example.com"), site.user("bob@example.com")
    secret = alice.create_key("alice's")
    prefix = secret[4:12]
    site.ask(secret)
    for action, form in [("state", {"disabled": "true"}), ("rename", {"name": "bob's now"}), ("delete", {})]:
        response = bob.post(f"/keys/{prefix}/{action}", form, token_from="/keys")
        assert response.status_code == 404 and "no API key with prefix" in response.text
    key = site.run(site.services.keys.get_key(_user_id(site, "alice@example.com"), prefix))
    assert key.name == "alice's" and not key.disabled
    assert prefix not in bob.get("/keys").text
    for path in (f"/usage?key={prefix}", f"/logs?key={prefix}"):
        page = bob.get(path)
        assert page.status_code == 200 and "No API key with prefix" in page.text
    assert prefix not in bob.get("/logs").text and "Hello" in site.ask(secret)


def test_key_form_errors_are_explained(site):
    browser = site.user("form@example.com")
    bad = browser.post("/keys", {"name": "x", "limit_threshold": "-3"}, token_from="/keys")
    assert bad.status_code == 400 and "must not be negative" in bad.text
    weird = browser.post("/keys", {"name": "x", "limit_threshold": "lots"}, token_from="/keys")
    assert weird.status_code == 400 and "Not a valid USD amount" in weird.text
    for huge in ("1e11", "999999999999.999999"):  # the API's bound holds on the form too: never rounded
        refused = browser.post("/keys", {"name": "x", "limit_threshold": huge}, token_from="/keys")
        assert refused.status_code == 400 and "too large" in refused.text
    created = browser.post(
        "/keys", {"name": "ops", "kind": "management", "scopes": ["usage:read", "model:chat"]}, token_from="/keys"
    )
    assert created.status_code == 201
    prefix = re.search(r"cdr-([0-9A-Za-z]{8})", created.text).group(1)
    key = site.run(site.services.keys.get_key(_user_id(site, "form@example.com"), prefix))
    assert key.kind == "management" and key.scopes == ("usage:read",)  # only the kind's scopes


def test_admin_pages_are_for_admins_only(site):
    user = site.user("plain@example.com")
    uid = _user_id(site, "plain@example.com")
    assert user.get("/admin").status_code == 403
    for action, form in [("credit", {"amount": "100"}), ("limits", {"rpm_limit": "1"}), ("state", {"disabled": "true"})]:
        assert user.post(f"/admin/users/{uid}/{action}", form, token_from="/keys").status_code == 403
    info = site.run(site.services.users.get_user(uid))
    assert info.balance == 5 and info.rpm_limit is None and not info.disabled


def test_admins_grant_credit_and_set_rate_limits(site):
    site.user("member@example.com").close()
    uid = _user_id(site, "member@example.com")
    admin = site.admin()
    assert "member@example.com" in admin.get("/admin").text
    granted = admin.post(f"/admin/users/{uid}/credit", {"amount": "2.5", "reason": "thanks"}, token_from="/admin")
    assert granted.status_code == 303
    limits = admin.post(f"/admin/users/{uid}/limits", {"rpm_limit": "120", "tpm_limit": "50,000"}, token_from="/admin")
    assert limits.status_code == 303
    info = site.run(site.services.users.get_user(uid))
    assert info.balance == 7.5 and info.rpm_limit == 120 and info.tpm_limit == 50_000
    admin.post(f"/admin/users/{uid}/limits", {"rpm_limit": "", "tpm_limit": "many"}, token_from="/admin")
    assert site.run(site.services.users.get_user(uid)).tpm_limit == 50_000  # refused, unchanged
    admin.post(f"/admin/users/{uid}/limits", {"rpm_limit": "", "tpm_limit": ""}, token_from="/admin")
    info = site.run(site.services.users.get_user(uid))
    assert info.rpm_limit is None and info.tpm_limit is None  # back to the defaults
    missing = admin.post("/admin/users/99999/credit", {"amount": "1"}, token_from="/admin")
    assert missing.status_code == 404 and "no user with id 99999" in missing.text


def test_docs_is_our_own_page_and_the_swagger_ui_is_off(site):
    docs = site.browser().get("/docs")
    assert docs.status_code == 200 and "API reference" in docs.text
    assert f"{site.base}/v1/chat/completions" in docs.text and "/v2/usage" in docs.text
    assert "swagger" not in docs.text.lower()
    assert site.browser().get("/redoc").status_code == 404
    assert site.browser().get("/openapi.json").json()["info"]["title"] == "coderapi"


def test_pages_load_nothing_from_elsewhere_and_send_security_headers(site):
    browser = site.user("headers@example.com")
    for path in PAGES:
        page = browser.get(path)
        assert page.status_code == 200, path
        for url in re.findall(r'(?:src|href)="([^"]*)"', page.text):
            assert url.startswith(("/", "#", "?")) or url == "", f"{path} loads {url}"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
    assert browser.get("/static/app.css").status_code == 200


@pytest.mark.parametrize("path", ["/usage", "/logs"])
def test_report_pages_explain_a_range_outside_the_supported_years(site, path):
    browser = site.user(f"far{path[1:]}@example.com")
    for start, end in [("9999-12-30", "9999-12-31"), ("0001-01-01", "0001-01-02")]:  # were 500s (overflow)
        page = browser.get(f"{path}?period=custom&start={start}&end={end}")
        assert page.status_code == 200 and "1970 to 8999" in page.text


@pytest.mark.parametrize("page", ["%C2%B2", "%D9%A2", "9" * 5000, "0", "-1", "x"])
def test_report_pages_read_a_bad_page_number_as_page_one(site, page):
    browser = site.user(f"page{len(page)}-{page[:3].replace('%', '')}@example.com")
    for path in ("/usage", "/logs"):  # "²" and "٢" pass str.isdigit() but not int(): were 500s
        assert browser.get(f"{path}?page={page}").status_code == 200, path


def test_admin_forms_refuse_odd_numbers_and_out_of_range_ids(site):
    site.user("limits@example.com").close()
    uid = _user_id(site, "limits@example.com")
    admin = site.admin()
    for odd in ("²", "٣", "9" * 5000, "99999999999999999999"):  # the first three were 500s
        refused = admin.post(f"/admin/users/{uid}/limits", {"rpm_limit": odd}, token_from="/admin")
        assert refused.status_code == 303, odd
        assert "rpm_limit must be a whole number from 1 to 1,000,000,000" in admin.get("/admin").text
    assert site.run(site.services.users.get_user(uid)).rpm_limit is None
    huge = "99999999999999999999999"  # beyond the database's 64-bit INTEGER: was a 500 (OverflowError)
    for path, form in [(f"/admin/users/{huge}/credit", {"amount": "1"}),
                       (f"/admin/users/{huge}/state", {"disabled": "true"}),
                       (f"/admin/users/{huge}/limits", {"rpm_limit": "1"}), (f"/admin/users/{huge}/approve", {}),
                       (f"/admin/invites/{huge}/revoke", {}), ("/admin/users/0/credit", {"amount": "1"})]:
        answer = admin.post(path, form, token_from="/admin")
        assert answer.status_code == 400, path
        assert answer.json()["error"]["param"] in ("user_id", "invite_id")
    edge = admin.post(f"/admin/users/{2**63 - 1}/credit", {"amount": "1"}, token_from="/admin")
    assert edge.status_code == 404 and "no user with id" in edge.text


def test_key_names_refuse_control_and_invisible_characters_in_the_dashboard(site):
    browser = site.user("names@example.com")
    for name in ("\x1b]0;owned\x07\x1b[2J", "\u202eevil", "a\u200bb"):
        refused = browser.post("/keys", {"name": name, "kind": "inference"}, token_from="/keys")
        assert refused.status_code == 400 and "no control characters" in refused.text
