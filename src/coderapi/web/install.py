"""install_dashboard(app, services): the server-rendered dashboard on an app built by create_app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.responses import JSONResponse, Response

from coderapi.errors import CoderapiError
from coderapi.services.container import Services
from coderapi.web import filters
from coderapi.web.context import (
    Dashboard,
    LoginRequired,
    PageError,
    login_url,
    optional_viewer,
    redirect,
    render,
)
from coderapi.web.flash import Flash
from coderapi.web.routes import admin, auth, billing, docs, home, keys, logs, playground, usage
from coderapi.web.secret import load_session_secret
from coderapi.services.web_sessions import SessionStore
from coderapi.services.auth_throttle import AuthThrottle

WEB_DIR = Path(__file__).resolve().parent
ROUTERS = (home, auth, keys, usage, logs, playground, billing, docs, admin)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
    filters.install(templates.env)
    return templates


def install_dashboard(app: FastAPI, services: Services) -> None:
    settings = services.settings
    secret = load_session_secret(settings)
    app.state.dashboard = Dashboard(
        services=services,
        templates=make_templates(),
        sessions=SessionStore(services.db),
        throttle=AuthThrottle(
            services.db,
            login_per_email=settings.login_max_failures_per_email,
            login_per_ip=settings.login_max_failures_per_ip,
            signup_per_ip=settings.signup_max_per_ip,
        ),
        flash=Flash(secret, secure=settings.resolved_cookie_secure),
        secret=secret,
    )
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
    for module in ROUTERS:
        app.include_router(module.router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return redirect(request, login_url(exc.next_path))

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        context = dict(title=exc.title, message=exc.message, code=exc.status)
        viewer = await optional_viewer(request, request.app.state.dashboard)
        return render(request, "error.html", viewer, status=exc.status, **context)

    # Replaces the API's handler for this class (one per class): a dashboard page that meets an API
    # error (its reports are busy, the database is) shows it as a page; API routes keep the JSON.
    @app.exception_handler(CoderapiError)
    async def _service_error(request: Request, exc: CoderapiError) -> Response:
        if not _is_page(request):  # as api/errors.py renders it (the dashboard does not import the API)
            return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=exc.headers)
        page = await _page_error(request, PageError(exc.status_code, _PAGE_TITLES.get(exc.status_code, "Error"), exc.message))
        page.headers.update(exc.headers)
        return page


_PAGE_TITLES = {429: "Too many at once", 503: "Busy right now"}


def _is_page(request: Request) -> bool:
    """The request was routed to a dashboard page (a route of coderapi.web), not the API."""
    endpoint = request.scope.get("endpoint")
    return getattr(endpoint, "__module__", "").startswith("coderapi.web.")
