"""Inference requests end to end: admitted (key, limits, body, model, cost held), answered by the
model's backend, ended and recorded once (see `services.lifecycle`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from pydantic import BaseModel

from coderapi.backends.fair_pool import working_for
from coderapi.services.account_types import Principal
from coderapi.services.endpoints import Endpoint
from coderapi.services.lifecycle import Lifecycle, parse_body
from coderapi.services.request_life import BodySource

__all__ = ["InferenceOutcome", "InferenceService", "parse_body"]


@dataclass
class InferenceOutcome:
    answer: BaseModel | AsyncIterator[BaseModel]
    headers: dict[str, str]

    @property
    def streaming(self) -> bool:
        return not isinstance(self.answer, BaseModel)


class InferenceService:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle

    async def chat(
        self, body: BodySource, principal: Principal, request_id: str, *,
        origin: str = "api", client_request_id: str | None = None,
    ) -> InferenceOutcome:
        """`body`: the bytes, or a coroutine function reading them (called once the request holds
        its in-flight slot; it raises `ClientLeft` if the client hangs up meanwhile). `origin` ("api"
        or "playground") and `client_request_id` are kept on the usage row."""
        return await self._run(Endpoint.CHAT, body, principal, request_id, origin, client_request_id)

    async def complete(
        self, body: BodySource, principal: Principal, request_id: str, *,
        origin: str = "api", client_request_id: str | None = None,
    ) -> InferenceOutcome:
        return await self._run(Endpoint.COMPLETIONS, body, principal, request_id, origin, client_request_id)

    async def _run(
        self, endpoint: Endpoint, body: BodySource, principal: Principal, request_id: str, origin: str,
        client_request_id: str | None,
    ) -> InferenceOutcome:
        async with self._lifecycle.admit(
            principal, endpoint, body, request_id, origin=origin, client_request_id=client_request_id
        ) as admitted:
            with working_for(principal.user_id):  # the preparation threads take users in turn
                answer = await admitted.call_backend()
            if not isinstance(answer, BaseModel):  # from here the stream ends the request
                answer = await admitted.life.open_stream(answer)
            return InferenceOutcome(answer, admitted.life.headers)
