"""Every error leaves as OpenAI's `{"error": {...}}` body: raised anywhere, rendered here once."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from sqlalchemy.exc import OperationalError

from coderapi.errors import CoderapiError, InternalError, NotFound, ServiceUnavailable
from coderapi.protocol.validation import invalid_request_from

log = logging.getLogger("coderapi.errors")

_HTTP_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}


def render(error: CoderapiError) -> JSONResponse:
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CoderapiError)
    async def _typed(_: Request, exc: CoderapiError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return render(invalid_request_from(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return render(NotFound(f"Unknown route: {request.method} {request.url.path}", code="unknown_url"))
        error = CoderapiError(str(exc.detail), code=None, headers=dict(exc.headers or {}))
        error.status_code = exc.status_code
        error.error_type = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
        return render(error)

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # Last resort: Database.session() already maps these; this catches direct engine use.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return render(ServiceUnavailable("The database is busy or unavailable; please retry shortly.",
                                         code="database_unavailable"))

    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> Response:
        # The client hung up before its body was read: no one to answer, nothing begun to meter,
        # and not a fault of ours to log (a client could fill the log with tracebacks).
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(InternalError("The server had an error while processing your request."))
