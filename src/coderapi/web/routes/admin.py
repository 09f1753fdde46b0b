"""/admin (role admin): users, disable/enable, approve sign-ups, grant credit, per-user rate
limits, and sign-up invite codes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.errors import InvalidRequest, NotFound
from coderapi.services.user_limits import MAX_LIMIT
from coderapi.web.context import AdminDep, DashboardDep, PageError, RowId, checked_form, redirect, render
from coderapi.web.form_numbers import whole_number

router = APIRouter(include_in_schema=False)


def _text(form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _optional_limit(form, name: str) -> int | None:
    raw = _text(form, name).replace(",", "").replace("_", "")
    if not raw:
        return None
    number = whole_number(raw)
    if number is None:  # not ASCII digits, or too many of them to be a limit
        raise InvalidRequest(f"{name} must be a whole number from 1 to {MAX_LIMIT:,}, or empty for the default",
                             param=name)
    return number


async def _user_or_404(dash, user_id: int):
    try:
        return await dash.services.users.get_user(user_id)
    except NotFound:
        raise PageError(404, "No such user", f"There is no user with id {user_id}.") from None


async def _page(request: Request, viewer, dash, *, status: int = 200, new_invite: str | None = None) -> Response:
    settings = dash.services.settings
    users = await dash.services.users.list_users()
    return render(
        request, "admin.html", viewer, status=status, users=users,
        default_rpm=settings.default_rpm, default_tpm=settings.default_tpm,
        invites=await dash.services.signups.list_invites(), emails={u.id: u.email for u in users},
        new_invite=new_invite, requires_approval=settings.signup_requires_approval,
    )


@router.get("/admin")
async def users_page(request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    return await _page(request, viewer, dash)


@router.post("/admin/users/{user_id}/approve")
async def approve(user_id: RowId, request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    await checked_form(request, viewer)
    user = await _user_or_404(dash, user_id)
    await dash.services.signups.approve_user(user.id)
    return redirect(request, "/admin", f"{user.email} is approved and may sign in.")


@router.post("/admin/invites")
async def create_invite(request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    """The new code is rendered into this answer only (never into a flash cookie or a log)."""
    await checked_form(request, viewer)
    _, code = await dash.services.signups.create_invite(viewer.user.id)
    return await _page(request, viewer, dash, status=201, new_invite=code)


@router.post("/admin/invites/{invite_id}/revoke")
async def revoke_invite(invite_id: RowId, request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    await checked_form(request, viewer)
    try:
        await dash.services.signups.revoke_invite(invite_id)
    except NotFound:
        return redirect(request, "/admin", "That invite was used or revoked already.", "error")
    return redirect(request, "/admin", "Invite revoked.")


@router.post("/admin/users/{user_id}/state")
async def set_state(user_id: RowId, request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    user = await _user_or_404(dash, user_id)
    disabled = _text(form, "disabled") == "true"
    if user.id == viewer.user.id and disabled:
        return redirect(request, "/admin", "You cannot disable your own account.", "error")
    await dash.services.users.set_user_disabled(user.id, disabled)
    if disabled:
        await dash.sessions.revoke_user(user.id)
    verb = "disabled: their keys and sessions stop working" if disabled else "enabled"
    return redirect(request, "/admin", f"{user.email} is {verb}.")


@router.post("/admin/users/{user_id}/credit")
async def grant(user_id: RowId, request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    user = await _user_or_404(dash, user_id)
    reason = _text(form, "reason") or "granted in the dashboard"
    try:
        balance = await dash.services.users.grant_credit(
            user.id, _text(form, "amount").lstrip("$"), reason[:255], viewer.user.email
        )
    except InvalidRequest as exc:
        return redirect(request, "/admin", exc.message, "error")
    return redirect(request, "/admin", f"{user.email} now holds {balance:.2f} USD.")


@router.post("/admin/users/{user_id}/limits")
async def set_limits(user_id: RowId, request: Request, viewer: AdminDep, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    user = await _user_or_404(dash, user_id)
    try:
        rpm, tpm = _optional_limit(form, "rpm_limit"), _optional_limit(form, "tpm_limit")
        await dash.services.users.set_user_limits(user.id, rpm_limit=rpm, tpm_limit=tpm)
    except InvalidRequest as exc:
        return redirect(request, "/admin", exc.message, "error")
    return redirect(request, "/admin", f"Rate limits of {user.email} saved.")
