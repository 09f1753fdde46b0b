"""A browser-like HTTP client for the dashboard: its own cookie jar, CSRF tokens read from forms."""

from __future__ import annotations

import re

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_SECRET = re.compile(r'data-testid="new-secret">(cdr-[0-9A-Za-z]+)<')


class Browser:
    def __init__(self, base: str, **headers: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30, headers=headers)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def csrf(self, path: str = "/login") -> str:
        match = _CSRF.search(self.get(path).text)
        assert match, f"no CSRF field on {path}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, *, token_from: str | None = None, **kwargs) -> httpx.Response:
        """POST a form with the CSRF token of `token_from` (a page of this browser), unless the
        data already carries one."""
        data = dict(data or {})
        if "csrf_token" not in data and token_from is not None:
            data["csrf_token"] = self.csrf(token_from)
        return self.http.post(path, data=data, **kwargs)

    def signup(self, email: str, password: str = "correct horse battery") -> httpx.Response:
        form = {"email": email, "password": password, "password_confirm": password}
        return self.post("/signup", form, token_from="/signup")

    def login(self, email: str, password: str = "correct horse battery") -> httpx.Response:
        return self.post("/login", {"email": email, "password": password}, token_from="/login")

    def create_key(self, name: str = "k", **fields) -> str:
        response = self.post("/keys", {"name": name, "kind": "inference", **fields}, token_from="/keys")
        assert response.status_code == 201, response.text[:500]
        return _SECRET.search(response.text).group(1)

    def set_session(self, token: str) -> None:
        """Put a session id in the jar as the server would (same host), replacing any other."""
        self.http.cookies.set("cdr_session", token, domain=self.http.base_url.host)

    @property
    def session(self) -> str | None:
        return self.http.cookies.get("cdr_session")

    def close(self) -> None:
        self.http.close()
