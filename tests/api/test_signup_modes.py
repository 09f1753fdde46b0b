"""Sign-up can be opened, limited to invites or closed, can wait for an admin's approval, grants
the configured starting credit (0 included) and is throttled per address."""

from __future__ import annotations

import re
from decimal import Decimal

from tests.api.dashboard_site import ADMIN, open_site

INVITE = re.compile(r'data-testid="new-invite">(inv-[^<]+)<')


def _signup(browser, email: str, invite: str | None = None):
    form = {"email": email, "password": "correct horse battery", "password_confirm": "correct horse battery"}
    if invite is not None:
        form["invite_code"] = invite
    return browser.post("/signup", form, token_from="/signup")


def _emails(site) -> set[str]:
    return {u.email for u in site.run(site.services.users.list_users())}


def test_closed_sign_up_creates_nobody_and_is_not_offered(tmp_path):
    with open_site(tmp_path, signup="closed") as site:
        browser = site.browser()
        page = browser.get("/signup")
        assert 'data-testid="signup-closed"' in page.text and 'name="password_confirm"' not in page.text
        assert 'href="/signup"' not in browser.get("/login").text
        token = browser.csrf("/login")
        form = {"email": "x@example.com", "password": "long enough 1", "password_confirm": "long enough 1",
                "csrf_token": token}
        assert browser.post("/signup", form).status_code == 403
        assert _emails(site) == {ADMIN}


def test_invite_sign_up_needs_a_fresh_code_from_an_admin(tmp_path):
    with open_site(tmp_path, signup="invite", starting_credit=0) as site:
        browser = site.browser()
        assert 'name="invite_code"' in browser.get("/signup").text
        missing = _signup(browser, "a@example.com", "")
        assert missing.status_code == 400 and "needs an invite code" in missing.text
        bogus = _signup(browser, "a@example.com", "inv-made-up")
        assert bogus.status_code == 400 and "not valid" in bogus.text
        assert _emails(site) == {ADMIN}  # the refused sign-up left no user behind

        admin = site.admin()
        created = admin.post("/admin/invites", token_from="/admin")
        assert created.status_code == 201
        code = INVITE.search(created.text).group(1)
        assert code not in admin.get("/admin").text  # shown once; only its sha256 is kept

        assert _signup(browser, "a@example.com", code).status_code == 303
        user = site.run(site.services.users.get_user_by_email("a@example.com"))
        assert user.balance == Decimal(0) and not user.disabled  # starting_credit may be 0
        again = _signup(site.browser(), "b@example.com", code)
        assert again.status_code == 400 and "used already" in again.text
        assert "used by a@example.com" in admin.get("/admin").text


def test_sign_ups_wait_for_an_admin_when_approval_is_required(tmp_path):
    with open_site(tmp_path, signup_requires_approval=True) as site:
        browser = site.browser()
        answer = _signup(browser, "new@example.com")
        assert answer.status_code == 303 and answer.headers["location"] == "/login"
        assert browser.session is None
        user = site.run(site.services.users.get_user_by_email("new@example.com"))
        assert user.pending_approval and user.disabled
        assert browser.login("new@example.com").status_code == 401

        admin = site.admin()
        page = admin.get("/admin")
        assert 'data-testid="pending"' in page.text
        approved = admin.post(f"/admin/users/{user.id}/approve", token_from="/admin")
        assert approved.status_code == 303
        assert browser.login("new@example.com").status_code == 303
        user = site.run(site.services.users.get_user_by_email("new@example.com"))
        assert not user.pending_approval and not user.disabled


def test_sign_up_is_throttled_per_address(tmp_path):
    with open_site(tmp_path, signup_max_per_ip=3) as site:
        for i in range(3):
            assert _signup(site.browser(), f"s{i}@example.com").status_code == 303
        refused = _signup(site.browser(), "s3@example.com")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "Too many sign-ups from your network" in refused.text
        assert "s3@example.com" not in _emails(site)
