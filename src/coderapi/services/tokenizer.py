"""POST /tokenize and /detokenize: for clients that budget their context, metered and rate-limited.

Each call is checked like an inference call, in the same order: the key (an inference key with
`model:chat`), then its in-flight slot (the inference caps: these calls count in them), then the body
is read, then one request and the body's bytes / 4 in tokens from the key's (and its user's)
RPM and TPM buckets, kept whatever the answer, then the body is parsed and the model resolved, then
the work runs on the preparation threads. The tokens bound what a key can have parsed on the event
loop: 4 MiB of messages split into 170,000 content parts took 0.8 s to read, and a key's RPM alone
(600) let it send ten a second. Every call leaves a usage row (endpoint "tokenize" or
"detokenize", no tokens, cost 0) and the x-ratelimit-* headers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

from pydantic import BaseModel, ValidationError

from coderapi.backends.fair_pool import working_for
from coderapi.errors import CoderapiError, InternalError, RateLimited
from coderapi.limits import RateLimits
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from coderapi.protocol.validation import invalid_request_from
from coderapi.services.accounts import Principal
from coderapi.services.admission import check_key
from coderapi.services.cost_estimate import BYTES_PER_TOKEN
from coderapi.services.lifecycle import parse_body
from coderapi.services.metering import Metering
from coderapi.services.in_flight import InFlightLimits
from coderapi.services.request_life import BodySource, ClientLeft, RequestLife
from coderapi.services.registry import ModelRegistry, ServedModel

AnswerT = TypeVar("AnswerT", bound=BaseModel)

log = logging.getLogger("coderapi.tokenizer")


class TokenizerService:
    def __init__(self, registry: ModelRegistry, limits: RateLimits, metering: Metering, in_flight: InFlightLimits) -> None:
        self._registry = registry
        self._limits = limits
        self._metering = metering
        self._in_flight = in_flight

    async def tokenize(self, source: BodySource, principal: Principal, request_id: str) -> tuple[TokenizeResponse, dict]:
        async def work(scope: RequestLife, body: bytes) -> TokenizeResponse:
            request = parse_body(TokenizeRequest, body)
            served = self._resolve(request.model, scope)
            backend = served.backend
            if request.messages is not None:
                chat = _chat_messages(served.spec.id, request.messages)
                tokens = await backend.tokenize_messages(
                    chat.messages, add_generation_prompt=request.add_generation_prompt
                )
            else:
                tokens = await backend.tokenize(request.prompt)
            return TokenizeResponse(count=len(tokens), max_model_len=backend.context_length, tokens=tokens)

        return await self._metered("tokenize", principal, request_id, source, work)

    async def detokenize(self, source: BodySource, principal: Principal, request_id: str) -> tuple[DetokenizeResponse, dict]:
        async def work(scope: RequestLife, body: bytes) -> DetokenizeResponse:
            request = parse_body(DetokenizeRequest, body)
            served = self._resolve(request.model, scope)
            return DetokenizeResponse(prompt=await served.backend.detokenize(request.tokens))

        return await self._metered("detokenize", principal, request_id, source, work)

    def _resolve(self, model: str | None, scope: RequestLife) -> ServedModel:
        scope.model = (model or "")[:255]
        served = self._registry.resolve(model or self._registry.models[0].spec.id)
        scope.model, scope.spec = served.spec.id, served.spec
        return served

    async def _metered(
        self, endpoint: str, principal: Principal, request_id: str, source: BodySource,
        work: Callable[[RequestLife, bytes], Awaitable[AnswerT]],
    ) -> tuple[AnswerT, dict]:
        """`work` between the key, in-flight and rate checks and the usage row; returns the answer
        and its headers. The body is read once the call holds its in-flight slot, as an inference
        request's is (the same caps count both)."""
        scope = self._metering.open(principal, endpoint, request_id)
        try:
            with scope.gate():  # the key, the in-flight caps and the rate limit refuse; the work's own errors are errors
                check_key(principal)
                scope.release_in_flight = self._in_flight.acquire(principal)
            body = source if isinstance(source, bytes) else await source()
            with scope.gate():
                await self._take_request(principal, scope, len(body))
            scope.admitted()
            with working_for(principal.user_id):  # the preparation threads take users in turn
                answer = await work(scope, body)
            scope.end()
            return answer, scope.headers
        except (asyncio.CancelledError, ClientLeft) as exc:
            scope.end(exc)
            raise
        except CoderapiError as exc:
            scope.end(exc)
            _label(exc, scope.headers)
            raise
        except Exception as exc:
            # A fault of ours: its traceback goes to the server log only, the client gets a plain 500.
            log.exception("%s request %s failed unexpectedly", endpoint, request_id)
            scope.end(exc)
            raise InternalError("The server had an error while processing your request.") from exc

    async def _take_request(self, principal: Principal, scope: RequestLife, body_size: int) -> None:
        """One request and the body's tokens from the key's and the user's buckets (429 with Retry-After)."""
        quota = self._limits.quota(principal.rpm_limit, principal.tpm_limit)
        owner = self._limits.owner(principal.user_id, principal.rpm_limit, principal.tpm_limit)
        reservation = await self._limits.reserve(principal.key_id, quota, body_size // BYTES_PER_TOKEN, owner)
        scope.headers.update(reservation.headers)


def _chat_messages(model: str, messages: list[dict]) -> ChatCompletionRequest:
    """The messages, validated by the chat wire model (the same 400s as a chat request)."""
    try:
        return ChatCompletionRequest.model_validate({"model": model, "messages": messages})
    except ValidationError as exc:
        raise invalid_request_from(exc.errors()) from None


def _label(error: CoderapiError, headers: dict[str, str]) -> None:
    if isinstance(error, RateLimited):
        return  # a 429 carries its own headers
    for name, value in headers.items():
        error.headers.setdefault(name, value)
