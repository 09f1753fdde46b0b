"""Dashboard sign-up, sign-in and sessions over real HTTP: redirects, CSRF, session rotation,
cookie flags, throttling, clear messages."""

from __future__ import annotations

import pytest

from tests.api.dashboard_site import ADMIN, site  # noqa: F401  (the fixture)

PRIVATE = ["/keys", "/usage", "/logs", "/playground", "/billing", "/admin"]


@pytest.mark.parametrize("path", PRIVATE)
def test_private_pages_send_visitors_to_sign_in(site, path):
    response = site.browser().get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


def test_landing_page_for_visitors_overview_when_signed_in(site):
    visitor = site.browser().get("/")
    assert visitor.status_code == 200 and "Create an account" in visitor.text
    member = site.user("landing@example.com").get("/")
    assert member.status_code == 200 and "Overview" in member.text and "landing@example.com" in member.text


def test_forms_without_the_right_csrf_token_are_refused(site):
    browser, other = site.browser(), site.browser()
    form = {"email": ADMIN, "password": "correct horse battery"}
    assert browser.post("/login", form).status_code == 403  # no token
    assert browser.post("/login", {**form, "csrf_token": "0" * 64}).status_code == 403
    assert browser.post("/login", {**form, "csrf_token": other.csrf("/login")}).status_code == 403  # someone else's
    assert browser.session is None

    alice = site.user("csrf-a@example.com")
    bob = site.user("csrf-b@example.com")
    refused = alice.post("/keys", {"name": "x", "csrf_token": bob.csrf("/keys")})
    assert refused.status_code == 403 and "does not match your session" in refused.text
    assert alice.post("/keys", {"name": "x"}).status_code == 403
    alice_id = site.run(site.services.users.get_user_by_email("csrf-a@example.com")).id
    assert site.run(site.services.keys.list_keys(alice_id)) == []  # nothing was created
    assert alice.post("/keys", {"name": "x"}, headers={"x-csrf-token": alice.csrf("/keys")}).status_code == 201


def test_signing_in_always_issues_a_new_session_id(site):
    site.user("rotate@example.com").close()
    browser = site.browser()
    browser.set_session("planted-by-an-attacker")
    assert browser.login("rotate@example.com").status_code == 303
    first = browser.session
    assert first and first != "planted-by-an-attacker"
    laptop = site.browser()
    assert laptop.login("rotate@example.com").status_code == 303

    again = {"email": "rotate@example.com", "password": "correct horse battery"}
    assert browser.post("/login", again, token_from="/keys").status_code == 303  # again, same browser
    second = browser.session
    assert second != first
    replay = site.browser()
    replay.set_session(first)
    assert replay.get("/keys").status_code == 303  # the old id is gone on the server
    assert browser.get("/keys").status_code == 200
    assert laptop.get("/keys").status_code == 200  # other devices stay signed in


def test_signing_out_ends_the_session_on_the_server(site):
    browser = site.user("bye@example.com")
    token = browser.session
    response = browser.post("/logout", token_from="/keys")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    replay = site.browser()
    replay.set_session(token)
    assert replay.get("/keys").status_code == 303


def _session_cookie(response) -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith("cdr_session=")).lower()


def test_session_cookie_is_httponly_lax_and_its_secure_flag_is_the_setting(site):
    cookie = _session_cookie(site.browser().signup("cookie@example.com"))
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # cookie_secure defaults to false on a loopback host
    # The request's scheme does not decide it: a forwarded "https" changes nothing (the setting
    # does; tests/api/test_cookie_secure.py).
    proxied = site.browser(**{"x-forwarded-proto": "https"})
    page = proxied.get("/login")
    assert "secure" not in page.headers["set-cookie"].lower()
    assert "secure" not in _session_cookie(proxied.login("cookie@example.com"))


def test_sign_in_is_throttled_after_repeated_failures(site):
    site.user("throttle@example.com").close()
    browser = site.browser()
    for _ in range(site.services.settings.login_max_failures_per_email):
        wrong = browser.login("throttle@example.com", "not the password")
        assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    blocked = browser.login("throttle@example.com")  # even the right password now waits
    assert blocked.status_code == 429 and 0 < int(blocked.headers["retry-after"]) <= 15 * 60
    assert "Too many failed sign-in attempts for this email" in blocked.text
    assert "Try again in 15 minutes" in blocked.text
    assert browser.session is None
    assert site.browser().login(ADMIN).status_code == 303  # another email from here is not affected


def test_a_successful_sign_in_clears_the_failures(site):
    site.user("forgetful@example.com").close()
    browser = site.browser()
    for _ in range(4):
        assert browser.login("forgetful@example.com", "nope nope nope").status_code == 401
    assert browser.login("forgetful@example.com").status_code == 303
    for _ in range(4):
        assert site.browser().login("forgetful@example.com", "nope nope nope").status_code == 401
    assert site.browser().login("forgetful@example.com").status_code == 303


def test_sign_up_explains_what_is_wrong(site):
    browser = site.browser()
    mismatch = browser.post("/signup", {"email": "x@example.com", "password": "abcdefgh1", "password_confirm": "abcdefgh2"},
                            token_from="/signup")
    assert mismatch.status_code == 400 and "do not match" in mismatch.text
    short = browser.signup("y@example.com", "short")
    assert short.status_code == 400 and "at least 8 characters" in short.text
    bad = browser.signup("not-an-email")
    assert bad.status_code == 400 and "Not a valid email address" in bad.text
    taken = browser.signup(ADMIN)
    assert taken.status_code == 409 and "already exists" in taken.text


def test_after_sign_in_only_local_pages_are_followed(site):
    site.user("next@example.com").close()
    browser = site.browser()
    form = {"email": "next@example.com", "password": "correct horse battery"}
    assert browser.post("/login", {**form, "next": "/usage"}, token_from="/login").headers["location"] == "/usage"
    other = site.browser()
    evil = other.post("/login", {**form, "next": "//evil.example/steal"}, token_from="/login")
    assert evil.headers["location"] == "/"


def test_a_disabled_user_is_signed_out_everywhere(site):
    user = site.user("disabled@example.com")
    info = site.run(site.services.users.get_user_by_email("disabled@example.com"))
    admin = site.admin()
    response = admin.post(f"/admin/users/{info.id}/state", {"disabled": "true"}, token_from="/admin")
    assert response.status_code == 303
    assert user.get("/keys").status_code == 303
    refused = site.browser().login("disabled@example.com")
    assert refused.status_code == 401
    admin.post(f"/admin/users/{info.id}/state", {"disabled": "false"}, token_from="/admin")
    assert site.browser().login("disabled@example.com").status_code == 303


@pytest.mark.parametrize("email", ["root@example.com\u200b", "c\x00@example.com", "\u202ec@example.com",
                                   "c\u00a0d@example.com", "c\ue000@example.com", "c\u2028@example.com"])
def test_sign_up_refuses_emails_with_control_or_invisible_characters(site, email):
    """A zero-width space made a second account that looks exactly like the admin's address."""
    refused = site.browser().signup(email)
    assert refused.status_code == 400 and "Not a valid email address" in refused.text
