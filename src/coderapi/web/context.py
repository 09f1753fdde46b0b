"""What every dashboard page shares: the app's Dashboard, the signed-in Viewer, CSRF-checked
forms, rendering with security headers, redirects with a flash message."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Path, Request
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from coderapi.services.account_types import UserInfo
from coderapi.services.container import Services
from coderapi.web.csrf import FIELD, HEADER, csrf_token, csrf_valid
from coderapi.web.flash import Flash
from coderapi.services.web_sessions import SessionStore
from coderapi.services.auth_throttle import AuthThrottle

SESSION_COOKIE = "cdr_session"
PRESESSION_COOKIE = "cdr_pre"  # binds the CSRF token of the login and signup forms
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass
class Dashboard:
    services: Services
    templates: Jinja2Templates
    sessions: SessionStore
    throttle: AuthThrottle
    flash: Flash
    secret: bytes


@dataclass(frozen=True)
class Viewer:
    """The signed-in person and the session token their browser sent."""

    user: UserInfo
    token: str

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """Rendered as an HTML error page with this status (403 CSRF/admin-only, 404 not yours)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def get_dashboard(request: Request) -> Dashboard:
    return request.app.state.dashboard


DashboardDep = Annotated[Dashboard, Depends(get_dashboard)]


async def optional_viewer(request: Request, dash: DashboardDep) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE)
    user = await dash.sessions.resolve(token)
    return Viewer(user, token) if user is not None else None


async def require_viewer(request: Request, viewer: Annotated[Viewer | None, Depends(optional_viewer)]) -> Viewer:
    if viewer is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path if request.method == "GET" else "/")
    return viewer


async def require_admin(viewer: Annotated[Viewer, Depends(require_viewer)]) -> Viewer:
    if not viewer.is_admin:
        raise PageError(403, "Admins only", "This page is for administrators of this server.")
    return viewer


MaybeViewer = Annotated[Viewer | None, Depends(optional_viewer)]
ViewerDep = Annotated[Viewer, Depends(require_viewer)]
AdminDep = Annotated[Viewer, Depends(require_admin)]
# A row id in a path (/admin/users/{user_id}/...): the database's INTEGER is 64-bit signed, and a
# larger number overflows the driver, so one outside 1..2**63-1 is refused before any query.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def safe_next(value: str | None) -> str:
    """A local path to go to after signing in; anything else (another site) becomes '/'."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def login_url(next_path: str) -> str:
    return "/login" if next_path == "/" else f"/login?next={quote(next_path, safe='/')}"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def secure_cookies(request: Request) -> bool:
    """Whether cookies are marked Secure: the setting `cookie_secure`, never the request's scheme
    (a proxy's X-Forwarded-Proto must not decide whether a session may travel in clear)."""
    return get_dashboard(request).services.settings.resolved_cookie_secure


def cookies_lost_here(request: Request) -> bool:
    """True when this page came over plain HTTP from a non-local name while cookies are Secure:
    the browser will drop the session, so the sign-in forms say why (and what to set)."""
    local = request.url.hostname in ("localhost", "127.0.0.1", "::1")
    return secure_cookies(request) and request.url.scheme == "http" and not local


def _binding(request: Request, viewer: Viewer | None) -> str | None:
    return viewer.token if viewer is not None else request.cookies.get(PRESESSION_COOKIE)


async def checked_form(request: Request, viewer: Viewer | None) -> FormData:
    """The posted form, once its CSRF token matches this browser's session; else 403."""
    form = await request.form()
    supplied = form.get(FIELD) or request.headers.get(HEADER)
    secret = get_dashboard(request).secret
    if not csrf_valid(secret, _binding(request, viewer), supplied if isinstance(supplied, str) else None):
        raise PageError(
            403, "This form has expired",
            "The security token of this form is missing or does not match your session. "
            "Reload the page and try again.",
        )
    return form


def render(
    request: Request, template: str, viewer: Viewer | None = None, *, status: int = 200, **context
) -> HTMLResponse:
    dash = get_dashboard(request)
    binding, new_presession = _binding(request, viewer), None
    if binding is None:
        binding = new_presession = secrets.token_urlsafe(32)
    flash = dash.flash.take(request)
    values = dict(
        viewer=viewer, csrf_token=csrf_token(dash.secret, binding), flash=flash,
        base_url=str(request.base_url).rstrip("/"), path=request.url.path,
        signup_mode=dash.services.settings.signup, cookies_lost=cookies_lost_here(request), **context,
    )
    response = dash.templates.TemplateResponse(request, template, values, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    if flash is not None:
        dash.flash.clear(response)
    if new_presession is not None:
        response.set_cookie(
            PRESESSION_COOKIE, new_presession, httponly=True, samesite="lax", secure=secure_cookies(request), path="/"
        )
    return response


def redirect(request: Request, url: str, message: str | None = None, level: str = "success") -> Response:
    response = RedirectResponse(url, status_code=303)
    if message:
        get_dashboard(request).flash.set(response, request, message, level)
    return response


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure_cookies(request),
        path="/",
    )
