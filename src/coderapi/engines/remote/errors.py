"""Model-server failures as the caller sees them: our own words, never the server's.

An upstream's URL and its error body may name internal hosts, versions or other tenants'
details; they are logged here, server-side, and the client gets a generic message with a code.
What the caller can act on is kept: the status class (a 400 stays a 400, a busy upstream is a
503 with Retry-After), the upstream's `code` when it is context_length_exceeded, and `param`
when it is a plain field name.
"""

from __future__ import annotations

import logging

from pydantic_core import from_json

from coderapi.errors import (
    CoderapiError, ContextLengthExceeded, InvalidRequest, NotFound, Overloaded, UpstreamError, retry_after_seconds,
)

log = logging.getLogger("coderapi.upstream")

_LOGGED_BODY = 2000  # characters of an upstream error body kept in the log
_MAX_PARAM = 64


class ProtocolError(Exception):
    """A replica's answer that its API does not allow (not JSON, a field of the wrong type, a token
    id outside the vocabulary, more tokens than asked for). Raised while reading a stream and
    turned into an UpstreamError by the engine; the message is for the log only."""


def json_object(payload: bytes) -> dict:
    """A replica's answer or stream event as the JSON object it must be; ProtocolError otherwise
    (not JSON, nested past the parser's limit, a list, a number)."""
    try:
        data = from_json(payload)
    except ValueError as exc:  # pydantic_core's recursion limit and bad UTF-8 are ValueErrors too
        raise ProtocolError(f"an answer that is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"a JSON {type(data).__name__}, not an object: {payload[:80]!r}")
    return data


def _error_fields(content: bytes) -> dict:
    try:
        body = from_json(content).get("error") or {}  # jiter: nesting past its limit is a ValueError
    except (ValueError, AttributeError):
        body = {}
    return body if isinstance(body, dict) else {}


def _param(value) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= _MAX_PARAM and value.replace(".", "").replace("_", "").replace("[", "").replace("]", "").isalnum():
        return value
    return None


def error_for(status: int, content: bytes, retry_after: str | None, url: str) -> CoderapiError:
    """The error to raise for an upstream's 4xx/5xx answer, from its status, body and Retry-After
    (whichever HTTP client read them)."""
    log.warning("upstream %s answered %s: %s", url, status, content[:_LOGGED_BODY].decode("utf-8", "replace"))
    fields = _error_fields(content)
    param = _param(fields.get("param"))
    if status in (429, 503):
        # parsed, never taken as is: "²" passes isdigit(), 400 nines overflow int(), and it is relayed
        wait = retry_after_seconds(retry_after)
        return Overloaded("The model server is busy right now; please retry shortly.", retry_after=wait)
    if fields.get("code") == "context_length_exceeded":
        return ContextLengthExceeded(
            "The request does not fit the model's context length (the prompt plus max_tokens); "
            "shorten the prompt or lower max_tokens.", param=param or "messages",
        )
    if status == 404:
        return NotFound("The model server does not know the requested resource.", code="upstream_not_found")
    if status in (400, 413, 422):
        return InvalidRequest(
            f"The model server refused the request as invalid (status {status}); check its parameters.",
            param=param, code="upstream_invalid_request",
        )
    return UpstreamError(f"The model server failed to answer (status {status}).", code="upstream_error")


def unreachable(url: str, exc: BaseException) -> UpstreamError:
    log.warning("upstream %s unreachable: %r", url, exc)
    return UpstreamError("The model server could not be reached.", code="upstream_unreachable")


def stream_failed(url: str, detail) -> UpstreamError:
    log.warning("upstream %s failed mid-stream: %s", url, str(detail)[:_LOGGED_BODY])
    return UpstreamError("The model server failed in the middle of the answer.", code="upstream_stream_error")


def bad_answer(url: str, detail) -> UpstreamError:
    log.warning("upstream %s sent an answer its API does not allow: %s", url, str(detail)[:_LOGGED_BODY])
    return UpstreamError("The model server sent an answer that could not be read.", code="upstream_error")


def status_fails_over(status: int) -> bool:
    """A busy (429) or failing (5xx) replica: another may answer. Client errors (4xx) would not."""
    return status >= 500 or status == 429
