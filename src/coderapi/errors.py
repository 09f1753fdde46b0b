"""Typed errors, raised anywhere below the API and rendered once as OpenAI's error body.

The status codes follow the `openai` SDK's error classes, which are the client-side contract:
400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError,
409 ConflictError, 422 UnprocessableEntityError, 429 RateLimitError, >=500 InternalServerError.
"""

from __future__ import annotations


class CoderapiError(Exception):
    """Base of every error that becomes `{"error": {"message", "type", "param", "code"}}`."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}

    def to_body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(CoderapiError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class AuthenticationFailed(CoderapiError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(CoderapiError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class QuotaExceeded(PermissionDenied):
    """Money refusals are 403, not 429: the SDK retries 429, and retrying cannot add credit."""

    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class NotFound(CoderapiError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class Conflict(CoderapiError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class RequestTooLarge(CoderapiError):
    """413: the body is over the route's size limit (refused before it is read in full)."""

    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(CoderapiError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class InternalError(CoderapiError):
    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"


class UpstreamError(CoderapiError):
    status_code = 502
    error_type = "upstream_error"
    default_code = "upstream_error"


class Overloaded(CoderapiError):
    status_code = 503
    error_type = "overloaded"
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))


class ModelNotReady(Overloaded):
    default_code = "model_not_ready"


class ServiceUnavailable(CoderapiError):
    """A dependency the request needs (the database, the shared rate limiter) cannot answer now.

    503 with Retry-After: the `openai` SDK retries it, and retrying is right once it is back."""

    status_code = 503
    error_type = "server_error"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float = 2.0, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.headers.setdefault("retry-after", str(max(1, int(retry_after + 0.999))))
