"""Typed errors, raised anywhere below the API and rendered once as OpenAI's error body.

The status codes follow the `openai` SDK's error classes, which are the client-side contract:
400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError,
409 ConflictError, 422 UnprocessableEntityError, 429 RateLimitError, >=500 InternalServerError.
"""

from __future__ import annotations

import math

RETRY_AFTER_MIN = 1  # seconds: Retry-After is whole seconds, and 0 would invite a retry storm
RETRY_AFTER_MAX = 3600  # seconds: no answer asks a client to wait longer (an upstream's may say more)
RETRY_AFTER_DEFAULT = 1  # seconds, for a value that is not a number


def retry_after_seconds(value) -> int:
    """Whole seconds for a Retry-After header: rounded up and clamped to RETRY_AFTER_MIN..MAX.
    `value` may be a number or a header's text (ASCII digits, optionally a decimal point); anything
    else (an HTTP date, "²", NaN) is RETRY_AFTER_DEFAULT. Never raises: an upstream's header is parsed here."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.replace(".", "", 1).isdigit()):
            return RETRY_AFTER_DEFAULT
        value = text
    try:
        seconds = float(value)
    except OverflowError:  # an int past float's range: "much later"
        return RETRY_AFTER_MAX
    except (TypeError, ValueError):
        return RETRY_AFTER_DEFAULT
    if math.isnan(seconds):
        return RETRY_AFTER_DEFAULT
    return int(min(max(math.ceil(min(seconds, RETRY_AFTER_MAX)), RETRY_AFTER_MIN), RETRY_AFTER_MAX))


class CoderapiError(Exception):
    """Base of every error that becomes `{"error": {"message", "type", "param", "code"}}`."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None
    retry_after: float | None = None  # seconds; when set, the answer carries Retry-After

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        if retry_after is not None:
            self.retry_after = retry_after
        if self.retry_after is not None:  # whole seconds, rounded up, within RETRY_AFTER_MIN..MAX
            self.retry_after = retry_after_seconds(self.retry_after)
            self.headers.setdefault("retry-after", str(self.retry_after))

    def __init_subclass__(
        cls, *, status: int | None = None, kind: str | None = None, code: str | None = None, **kwargs
    ) -> None:
        """`class NotFound(CoderapiError, status=404, kind=..., code=...)`: the HTTP status, the
        body's `type` and the default `code` of a subclass (each inherited when not given)."""
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if kind is not None:
            cls.error_type = kind
        if code is not None:
            cls.default_code = code

    def to_body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(CoderapiError, status=400, kind="invalid_request_error"):
    """400: the request is malformed or asks for something impossible (`param` names the field)."""


class ContextLengthExceeded(InvalidRequest, code="context_length_exceeded"):
    """400: the prompt (with the completion asked for) does not fit the model's context."""


class AuthenticationFailed(CoderapiError, status=401, kind="authentication_error", code="invalid_api_key"):
    """401: no key, or one that is not known."""


class PermissionDenied(CoderapiError, status=403, kind="permission_error", code="permission_denied"):
    """403: the key may not do this (scope, kind, disabled key or user, another user's data)."""


class QuotaExceeded(PermissionDenied, kind="insufficient_quota", code="insufficient_quota"):
    """Money refusals are 403, not 429: the SDK retries 429, and retrying cannot add credit."""


class NotFound(CoderapiError, status=404, kind="invalid_request_error", code="not_found"):
    """404: no such thing (or not one the caller may know of)."""


class ModelNotFound(NotFound, code="model_not_found"):
    """404: no served model has this id or alias."""


class Conflict(CoderapiError, status=409, kind="invalid_request_error", code="conflict"):
    """409: it exists already (an email taken)."""


class RequestTimeout(CoderapiError, status=408, kind="invalid_request_error", code="request_timeout"):
    """408: the request's headers or body did not arrive in time (the connection is then closed)."""


class RequestTooLarge(CoderapiError, status=413, kind="invalid_request_error", code="request_too_large"):
    """413: the body is over the route's size limit (refused before it is read in full)."""


class HeadersTooLarge(CoderapiError, status=431, kind="invalid_request_error", code="headers_too_large"):
    """431: the request line and headers are over the server's size cap (the connection is then closed)."""


class RateLimited(CoderapiError, status=429, kind="rate_limit_exceeded", code="rate_limit_exceeded"):
    """429 with Retry-After: over a requests or tokens per minute limit."""

    def __init__(self, message: str, *, retry_after: float, **kwargs) -> None:  # required here
        super().__init__(message, retry_after=retry_after, **kwargs)


class TooManyConnections(RateLimited, code="too_many_connections"):
    """429 with Retry-After: the client's address has as many connections open as it may."""

    def __init__(self, message: str, **kwargs) -> None:
        super().__init__(message, retry_after=1, **kwargs)


class InternalError(CoderapiError, status=500, kind="server_error", code="internal_error"):
    """500: a fault of ours."""


class UpstreamError(CoderapiError, status=502, kind="upstream_error", code="upstream_error"):
    """502: an upstream server failed or answered something unusable."""


class Overloaded(CoderapiError, status=503, kind="overloaded", code="overloaded"):
    """503 with Retry-After: every slot and waiting place is taken; retry shortly."""

    retry_after = 1.0


class ModelNotReady(Overloaded, code="model_not_ready"):
    """503 with Retry-After: the model is loading or shutting down."""


class ServiceUnavailable(CoderapiError, status=503, kind="server_error", code="service_unavailable"):
    """A dependency the request needs (the database, the shared rate limiter) cannot answer now.

    503 with Retry-After: the `openai` SDK retries it, and retrying is right once it is back."""

    retry_after = 2.0
