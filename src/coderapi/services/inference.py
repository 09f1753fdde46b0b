"""Inference requests end to end: check the key, parse, rate-limit, resolve the model, reserve
its worst-case cost, generate, meter (and settle)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from pydantic import BaseModel, ValidationError

from coderapi.errors import CoderapiError, InternalError, ModelNotFound
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest
from coderapi.protocol.validation import invalid_request_from
from coderapi.services.accounts import Principal
from coderapi.services.admission import Admission, check_key
from coderapi.services.metering import MeterScope, Metering
from coderapi.services.registry import ModelRegistry, ServedModel

RequestT = TypeVar("RequestT", bound=BaseModel)


@dataclass
class InferenceOutcome:
    answer: BaseModel | AsyncIterator[BaseModel]
    headers: dict[str, str]

    @property
    def streaming(self) -> bool:
        return not isinstance(self.answer, BaseModel)


def parse_body(model: type[RequestT], body: bytes) -> RequestT:
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise invalid_request_from(exc.errors()) from None


async def _prepend(first: BaseModel, rest: AsyncIterator[BaseModel]) -> AsyncIterator[BaseModel]:
    yield first
    async for item in rest:
        yield item


class InferenceService:
    def __init__(self, registry: ModelRegistry, metering: Metering, admission: Admission) -> None:
        self._registry = registry
        self._metering = metering
        self._admission = admission

    async def chat(
        self, body: bytes, principal: Principal, request_id: str, *,
        origin: str = "api", client_request_id: str | None = None,
    ) -> InferenceOutcome:
        """`origin` ("api" or "playground") and `client_request_id` are kept on the usage row."""
        scope = self._metering.open(
            principal, "chat.completions", request_id, origin=origin, client_request_id=client_request_id
        )
        return await self._run(body, principal, scope, ChatCompletionRequest, "chat")

    async def complete(
        self, body: bytes, principal: Principal, request_id: str, *,
        origin: str = "api", client_request_id: str | None = None,
    ) -> InferenceOutcome:
        scope = self._metering.open(
            principal, "completions", request_id, origin=origin, client_request_id=client_request_id
        )
        return await self._run(body, principal, scope, CompletionRequest, "complete")

    async def _run(
        self, body: bytes, principal: Principal, scope: MeterScope, model: type[BaseModel], method: str
    ) -> InferenceOutcome:
        try:
            check_key(principal)
            self._admission.count_in(principal, scope)
            request = parse_body(model, body)
            scope.model = request.model
            served, unknown = self._find(request.model)
            scope.spec = served.spec if served else None
            # The rate limits first: a request naming an unknown model is still counted.
            await self._admission.limit_rate(principal, scope.spec, request, len(body), scope)
            if unknown is not None:
                raise unknown
            await self._admission.reserve_cost(principal, served.spec, request, len(body), scope)
            call: Callable[..., Awaitable] = getattr(served.backend, method)
            answer = await call(request, scope.tally)
            if isinstance(answer, BaseModel):
                scope.finish("success", 200)
                return InferenceOutcome(answer, scope.headers)
            return InferenceOutcome(await self._started(scope, answer), scope.headers)
        except asyncio.CancelledError:
            scope.finish("cancelled", 499, "client_disconnected")
            raise
        except CoderapiError as exc:
            error = await self._admission.confirm_refusal(principal, exc, scope)
            scope.fail(error)
            await self._admission.label(error, principal, scope)
            if error is exc:
                raise
            raise error from None
        except Exception as exc:
            scope.fail(exc)
            error = InternalError("The server had an error while processing your request.")
            await self._admission.label(error, principal, scope)
            raise error from exc

    def _find(self, model_id: str) -> tuple[ServedModel | None, ModelNotFound | None]:
        try:
            return self._registry.resolve(model_id), None
        except ModelNotFound as exc:
            return None, exc

    @staticmethod
    async def _started(scope: MeterScope, stream: AsyncIterator[BaseModel]) -> AsyncIterator[BaseModel]:
        """Waits for the first chunk, so a refusal before any output is still a plain HTTP error."""
        metered = scope.wrap_stream(stream)
        first = await anext(metered)
        return _prepend(first, metered)
