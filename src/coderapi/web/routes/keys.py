"""/keys: list, create (secret shown once), enable/disable, rename, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from coderapi.errors import InvalidRequest, NotFound
from coderapi.services.account_types import KEY_KINDS, MANAGEMENT_SCOPES, MODEL_SCOPES, RETENTIONS
from coderapi.web.context import DashboardDep, PageError, ViewerDep, checked_form, redirect, render

router = APIRouter(include_in_schema=False)
SCOPES_BY_KIND = {"inference": MODEL_SCOPES, "management": MANAGEMENT_SCOPES}


def _text(form, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def key_fields(form) -> dict:
    """KeyService.create_key's keyword arguments from the creation form."""
    kind = _text(form, "kind") or "inference"
    if kind not in KEY_KINDS:
        raise InvalidRequest("Pick a key kind: inference or management.", param="kind")
    allowed = SCOPES_BY_KIND[kind]
    scopes = [s for s in form.getlist("scopes") if s in allowed]
    threshold = _text(form, "limit_threshold").lstrip("$") or None
    return dict(
        name=_text(form, "name") or None,
        kind=kind,
        scopes=scopes or None,  # none ticked: the kind's defaults
        limit_threshold=threshold,
        limit_retention=_text(form, "limit_retention") or "no_reset",
    )


async def _page(request: Request, viewer, dash, *, status: int = 200, **extra) -> Response:
    keys = await dash.services.keys.list_keys(viewer.user.id)
    return render(
        request, "keys.html", viewer, status=status, keys=list(reversed(keys)),
        model_scopes=MODEL_SCOPES, management_scopes=MANAGEMENT_SCOPES, retentions=RETENTIONS, **extra,
    )


def _not_yours(prefix: str) -> PageError:
    return PageError(404, "No such key", f"There is no API key with prefix {prefix!r} in your account.")


@router.get("/keys")
async def keys_page(request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    return await _page(request, viewer, dash)


@router.post("/keys")
async def create_key(request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    try:
        fields = key_fields(form)
        info, secret = await dash.services.keys.create_key(viewer.user.id, **fields)
    except InvalidRequest as exc:
        again = dict(form=dict(form), form_scopes=form.getlist("scopes"))
        return await _page(request, viewer, dash, status=400, error=exc.message, **again)
    # Rendered straight into this answer (never a redirect, cookie or log): shown once.
    return await _page(request, viewer, dash, status=201, created=info, secret=secret)


@router.post("/keys/{prefix}/state")
async def set_state(prefix: str, request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    disabled = _text(form, "disabled") == "true"
    try:
        info = await dash.services.keys.set_key_disabled(viewer.user.id, prefix, disabled)
    except NotFound:
        raise _not_yours(prefix) from None
    state = "disabled: requests with it are refused" if info.disabled else "enabled"
    return redirect(request, "/keys", f"Key {info.prefix}… is {state}.")


@router.post("/keys/{prefix}/rename")
async def rename(prefix: str, request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    form = await checked_form(request, viewer)
    try:
        info = await dash.services.keys.update_key(viewer.user.id, prefix, name=_text(form, "name") or None)
    except NotFound:
        raise _not_yours(prefix) from None
    except InvalidRequest as exc:
        return redirect(request, "/keys", exc.message, "error")
    return redirect(request, "/keys", f"Key {info.prefix}… renamed to “{info.name or 'unnamed'}”.")


@router.post("/keys/{prefix}/delete")
async def delete(prefix: str, request: Request, viewer: ViewerDep, dash: DashboardDep) -> Response:
    await checked_form(request, viewer)
    try:
        await dash.services.keys.delete_key(viewer.user.id, prefix)
    except NotFound:
        raise _not_yours(prefix) from None
    return redirect(request, "/keys", f"Key {prefix}… deleted. Requests with it are refused.")
