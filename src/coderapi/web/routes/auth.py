"""/signup, /login and POST /logout."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.errors import Conflict, InvalidRequest
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

router = APIRouter(include_in_schema=False)


def _field(form, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


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


@router.post("/login")
async def login(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    email, password = _field(form, "email").strip(), _field(form, "password")
    next_path, ip = safe_next(_field(form, "next")), client_ip(request)

    def again(error: str, status: int) -> Response:
        return render(request, "auth/login.html", next=next_path, email=email, error=error, status=status)

    wait = await dash.throttle.retry_after(email, ip)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        return again(
            f"Too many failed sign-in attempts for this email from your network. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.", 429,
        )
    user = await dash.services.accounts.verify_password(email, password)
    if user is None:
        await dash.throttle.record_failure(email, ip)
        return again("Wrong email or password (or the account is disabled).", 401)
    await dash.throttle.clear(email, ip)
    return await _signed_in(request, dash, user.id, next_path, f"Signed in as {user.email}.")


@router.get("/signup")
async def signup_page(request: Request, viewer: MaybeViewer) -> Response:
    if viewer is not None:
        return redirect(request, "/")
    return render(request, "auth/signup.html", email="")


@router.post("/signup")
async def signup(request: Request, viewer: MaybeViewer, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    email, password = _field(form, "email").strip(), _field(form, "password")

    def again(error: str, field: str | None, status: int = 400) -> Response:
        return render(request, "auth/signup.html", email=email, error=error, error_field=field, status=status)

    if password != _field(form, "password_confirm"):
        return again("The two passwords do not match.", "password_confirm")
    try:
        user = await dash.services.accounts.create_user(email, password)
    except Conflict:
        return again("An account with this email already exists. Sign in instead?", "email", 409)
    except InvalidRequest as exc:
        return again(exc.message, exc.param)
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
