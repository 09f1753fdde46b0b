"""The inference endpoints, each tied to its wire request and to its method of the Backend protocol."""

from __future__ import annotations

import enum
from typing import Union

from coderapi.backends.base import Backend, ChatAnswer, CompletionAnswer, RequestTally
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest

InferenceRequest = Union[ChatCompletionRequest, CompletionRequest]


class Endpoint(enum.Enum):
    """The value is the usage row's `endpoint`."""

    CHAT = "chat.completions"
    COMPLETIONS = "completions"

    @property
    def request_type(self) -> type[ChatCompletionRequest] | type[CompletionRequest]:
        return ChatCompletionRequest if self is Endpoint.CHAT else CompletionRequest

    async def call(self, backend: Backend, request: InferenceRequest, tally: RequestTally) -> ChatAnswer | CompletionAnswer:
        """The backend's answer: Backend.chat for CHAT, Backend.complete for COMPLETIONS."""
        if not isinstance(request, self.request_type):
            raise TypeError(f"{self.name} takes a {self.request_type.__name__}, not a {type(request).__name__}")
        if isinstance(request, ChatCompletionRequest):
            return await backend.chat(request, tally)
        return await backend.complete(request, tally)
