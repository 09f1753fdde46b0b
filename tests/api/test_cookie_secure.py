"""The dashboard cookies' Secure flag is the setting `cookie_secure`, not the request's scheme."""

from __future__ import annotations

import re

import httpx

from tests.api.dashboard_site import ADMIN, PASSWORD, open_site


def test_cookie_secure_marks_every_cookie_secure_even_over_plain_http(tmp_path):
    with open_site(tmp_path, cookie_secure=True) as site:
        with httpx.Client(base_url=site.base) as http:
            page = http.get("/login")
            assert "; secure" in page.headers["set-cookie"].lower()
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            # httpx (rightly) keeps Secure cookies off plain http: send the pre-session by hand.
            answer = http.post("/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": token},
                               headers={"cookie": f"cdr_pre={page.cookies['cdr_pre']}"})
        assert answer.status_code == 303
        cookies = answer.headers.get_list("set-cookie")
        session = [c for c in cookies if c.startswith("cdr_session=")]
        flash = [c for c in cookies if c.startswith("cdr_flash=")]
        assert session and flash
        assert all("; secure" in c.lower() for c in session + flash)


def test_sign_in_pages_explain_why_a_session_cannot_stick_over_plain_http(tmp_path):
    with open_site(tmp_path, cookie_secure=True) as site:
        with httpx.Client(base_url=site.base) as http:
            assert 'data-testid="cookies-lost"' not in http.get("/login").text  # localhost: browsers keep them
            remote = http.get("/login", headers={"host": "gateway.example"})
            assert 'data-testid="cookies-lost"' in remote.text and "CODERAPI_COOKIE_SECURE=false" in remote.text
    with open_site(tmp_path / "plain") as site:
        page = httpx.get(site.base + "/login", headers={"host": "gateway.example"})
        assert 'data-testid="cookies-lost"' not in page.text
