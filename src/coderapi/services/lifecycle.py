"""An inference request's life, admitted and ended in one place.

    async with lifecycle.admit(principal, Endpoint.CHAT, body, request_id) as admitted:
        answer = await admitted.call_backend()
        # a JSON answer: the block's end ends the request; a stream: its close does
        stream = await admitted.life.open_stream(answer)

`admit` runs the admission steps in order (see `services.admission` for why this order): the key,
the in-flight count, then the body is read; the request and its body's tokens in the rate limits,
then the body is parsed; the rest of its tokens, the model, the cost hold. Each gate's error refuses
the request. The block's end ends the request (success, or the error that left it, or cancelled), unless a stream took it over (`RequestLife.open_stream`): then the stream's close ends
it. Either way it ends once and is recorded once (`Metering.record`), and an error leaving the
block is the one the client gets (the key's own refusal where it was disabled meanwhile,
`x-ratelimit-*` headers, 500 for anything untyped).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, TypeVar

from pydantic import BaseModel, ValidationError

from coderapi.backends.base import ChatAnswer, CompletionAnswer
from coderapi.errors import CoderapiError, InternalError, ModelNotFound
from coderapi.protocol.validation import invalid_request_from, require_finite_json_numbers
from coderapi.services.account_types import Principal
from coderapi.services.admission import Admission, check_key
from coderapi.services.endpoints import Endpoint, InferenceRequest
from coderapi.services.metering import Metering
from coderapi.services.registry import ModelRegistry, ServedModel
from coderapi.services.request_life import BodySource, ClientLeft, RequestLife, State

RequestT = TypeVar("RequestT", bound=BaseModel)

log = logging.getLogger("coderapi.lifecycle")


class AdmittedRequest:
    """What the block of `Lifecycle.admit` works with: the parsed request, its model, its life."""

    def __init__(self, life: RequestLife, endpoint: Endpoint, request: InferenceRequest, served: ServedModel) -> None:
        self.life = life
        self.endpoint = endpoint
        self.request = request
        self.served = served

    async def call_backend(self) -> ChatAnswer | CompletionAnswer:
        return await self.endpoint.call(self.served.backend, self.request, self.life.tally)


class Lifecycle:
    def __init__(self, registry: ModelRegistry, metering: Metering, admission: Admission) -> None:
        self._registry = registry
        self._metering = metering
        self._admission = admission

    @asynccontextmanager
    async def admit(
        self, principal: Principal, endpoint: Endpoint, body: BodySource, request_id: str, *,
        origin: str = "api", client_request_id: str | None = None,
    ) -> AsyncIterator[AdmittedRequest]:
        life = self._metering.open(
            principal, endpoint.value, request_id, origin=origin, client_request_id=client_request_id
        )
        try:
            request, served = await self._admit(life, endpoint, body)
            yield AdmittedRequest(life, endpoint, request, served)
            if not life.stream_owns_end:
                life.end()
        except (asyncio.CancelledError, ClientLeft) as exc:
            life.end(exc)
            raise
        except CoderapiError as exc:
            error = await self._refused_or(life, principal, exc)
            await self._admission.label(error, principal, life.headers)
            if error is exc:
                raise
            raise error from None
        except Exception as exc:
            # A fault of ours: its traceback goes to the server log only, the client gets a plain 500.
            log.exception("request %s failed unexpectedly", request_id)
            life.end(exc)
            error = InternalError("The server had an error while processing your request.")
            await self._admission.label(error, principal, life.headers)
            raise error from exc

    async def _admit(self, life: RequestLife, endpoint: Endpoint, source: BodySource) -> tuple[InferenceRequest, ServedModel]:
        principal = life.principal
        with life.gate():
            check_key(principal)
            life.release_in_flight = self._admission.count_in(principal)
        # Read once the slot is held: the bodies one key (one user) has in memory at once are bounded
        # by its in-flight caps, not by how many connections it opens.
        body = source if isinstance(source, bytes) else await source()
        with life.gate():
            reservation = await self._admission.limit_body(principal, len(body))  # before the parse's cost
        life.headers.update(reservation.headers)
        body_tokens = reservation.tokens
        # A request that processed no token (a bad body, a refusal) keeps its body's tokens counted.
        life.settle = lambda used: self._admission.settle_rate(reservation, used or body_tokens)
        request = parse_body(endpoint.request_type, body)
        life.model = request.model
        served, unknown = self._find(request.model)
        life.spec = served.spec if served else None
        # The rate limits before the model: a request naming an unknown model is still counted.
        with life.gate():
            await self._admission.limit_completion(reservation, life.spec, request, len(body))
        life.headers.update(reservation.headers)
        if unknown is not None:
            raise unknown
        with life.gate():
            life.hold, life.principal = await self._admission.reserve_cost(
                principal, served.spec, request, len(body), life.request_id
            )
        life.admitted()
        return request, served

    async def _refused_or(self, life: RequestLife, principal: Principal, error: CoderapiError) -> CoderapiError:
        """Ends the request with `error`, or with the key's refusal where the key (possibly
        cached) was disabled or deleted meanwhile; returns the error to answer."""
        if life.state is not State.ENDED:
            verdict = await self._admission.key_verdict(principal, error, held=life.hold is not None)
            if verdict is not None:
                life.refuse(verdict)
                return verdict
        life.end(error)
        return error

    def _find(self, model_id: str) -> tuple[ServedModel | None, ModelNotFound | None]:
        try:
            return self._registry.resolve(model_id), None
        except ModelNotFound as exc:
            return None, exc


def parse_body(model: type[RequestT], body: bytes) -> RequestT:
    require_finite_json_numbers(body or b"null")
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise invalid_request_from(exc.errors()) from None
