"""/signup, /login and POST /logout.

Both forms are throttled (`AuthThrottle`: sign-in failures per email and per address, sign-ups
per address, 429 with Retry-After) before any password is hashed, and the hashing itself runs in
the bounded password pool: when its queue is full the form answers 503 with Retry-After at once.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from coderapi.errors import Conflict, InvalidRequest, Overloaded
from coderapi.web.context import (
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    DashboardDep,
    MaybeViewer,
    checked_form,
    client_ip,
    redirect,
    render,
    safe_next,
    set_session_cookie,
)
from coderapi.services.auth_throttle import Refusal

router = APIRouter(include_in_schema=False)
BUSY = "The server is busy checking other sign-ins. Try again in a few seconds."


def _field(form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _in(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _with_retry_after(response: HTMLResponse, seconds: float) -> HTMLResponse:
    response.headers["retry-after"] = str(max(1, math.ceil(seconds)))
    return response


async def _signed_in(request: Request, dash, user_id: int, next_path: str, message: str) -> Response:
    """A brand-new session (the browser's old one, if any, is deleted) and a redirect."""
    token = await dash.sessions.create(user_id, replacing=request.cookies.get(SESSION_COOKIE))
    response = redirect(request, safe_next(next_path), message)
    set_session_cookie(request, response, token, int(dash.sessions.lifetime.total_seconds()))
    response.delete_cookie(PRESESSION_COOKIE, path="/")
    return response


@router.get("/login")
async def login_page(request: Request, viewer: MaybeViewer) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if viewer is not None:
        return redirect(request, next_path)
    return render(request, "auth/login.html", next=next_path, email="")


def _login_refused(refusal: Refusal) -> str:
    where = "for this email" if refusal.reason == "email" else "from your network"
    return f"Too many failed sign-in attempts {where}. Try again in {_in(refusal.retry_after)}."


@router.post("/login")
async def login(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    email, password = _field(form, "email").strip(), _field(form, "password")
    next_path, ip = safe_next(_field(form, "next")), client_ip(request)

    def again(error: str, status: int) -> HTMLResponse:
        return render(request, "auth/login.html", next=next_path, email=email, error=error, status=status)

    # Counted before the password is checked, in one atomic step (see services/auth_throttle.py).
    refusal = await dash.throttle.charge_login(email, ip)
    if refusal is not None:
        return _with_retry_after(again(_login_refused(refusal), 429), refusal.retry_after)
    try:
        user = await dash.services.signups.verify_password(email, password)
    except Overloaded as exc:
        return _with_retry_after(again(BUSY, 503), float(exc.headers["retry-after"]))
    if user is None:
        return again("Wrong email or password (or the account is disabled or awaits approval).", 401)
    await dash.throttle.login_succeeded(email, ip)
    return await _signed_in(request, dash, user.id, next_path, f"Signed in as {user.email}.")


def _signup_context(dash) -> dict:
    settings = dash.services.settings
    return dict(starting_credit=settings.starting_credit, requires_approval=settings.signup_requires_approval)


@router.get("/signup")
async def signup_page(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    if viewer is not None:
        return redirect(request, "/")
    return render(request, "auth/signup.html", email="", **_signup_context(dash))


@router.post("/signup")
async def signup(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    settings = dash.services.settings
    if settings.signup == "closed":
        return render(request, "auth/signup.html", email="", status=403, **_signup_context(dash))
    form = await checked_form(request, viewer)
    email, password = _field(form, "email").strip(), _field(form, "password")
    invite = _field(form, "invite_code").strip() if settings.signup == "invite" else None

    def again(error: str, field: str | None, status: int = 400) -> HTMLResponse:
        return render(request, "auth/signup.html", email=email, invite_code=invite, error=error,
                      error_field=field, status=status, **_signup_context(dash))

    refusal = await dash.throttle.charge_signup(client_ip(request))
    if refusal is not None:
        message = f"Too many sign-ups from your network. Try again in {_in(refusal.retry_after)}."
        return _with_retry_after(again(message, None, 429), refusal.retry_after)
    if password != _field(form, "password_confirm"):
        return again("The two passwords do not match.", "password_confirm")
    if invite == "":
        return again("Sign-up on this server needs an invite code from an administrator.", "invite_code")
    try:
        user = await dash.services.signups.create_user(
            email, password, pending_approval=settings.signup_requires_approval, invite_code=invite
        )
    except Conflict:
        return again("An account with this email already exists. Sign in instead?", "email", 409)
    except InvalidRequest as exc:
        return again(exc.message, exc.param)
    except Overloaded as exc:
        return _with_retry_after(again(BUSY, None, 503), float(exc.headers["retry-after"]))
    if user.pending_approval:
        return redirect(request, "/login", "Your account is created. An administrator must approve it "
                        "before you can sign in.", "info")
    welcome = f"Welcome! Your account holds {user.balance:.2f} USD of credit. Create a key to call the API."
    return await _signed_in(request, dash, user.id, "/", welcome)


@router.post("/logout")
async def logout(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    if viewer is not None:  # nothing to end (and no token to check) when already signed out
        await checked_form(request, viewer)
        await dash.sessions.revoke(viewer.token)
    response = redirect(request, "/login", "You are signed out.", "info")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
