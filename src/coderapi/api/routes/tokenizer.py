"""POST /tokenize and /detokenize, for clients that budget their context."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import ValidationError

from coderapi.api.deps import PrincipalDep, ServicesDep
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.validation import invalid_request_from
from coderapi.protocol.completions import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse

router = APIRouter(tags=["tokenizer"])


def _default_model(services) -> str:
    return services.registry.models[0].spec.id


@router.post("/tokenize", response_model=TokenizeResponse, summary="Token ids of a prompt or of chat messages")
async def tokenize(body: TokenizeRequest, _: PrincipalDep, services: ServicesDep) -> TokenizeResponse:
    served = services.registry.resolve(body.model or _default_model(services))
    backend = served.backend
    if body.messages is not None:
        try:
            request = ChatCompletionRequest.model_validate({"model": served.spec.id, "messages": body.messages})
        except ValidationError as exc:
            raise invalid_request_from(exc.errors()) from None
        tokens = await backend.tokenize_messages(request.messages, add_generation_prompt=body.add_generation_prompt)
    else:
        tokens = await backend.tokenize(body.prompt)
    return TokenizeResponse(count=len(tokens), max_model_len=backend.context_length, tokens=tokens)


@router.post("/detokenize", response_model=DetokenizeResponse, summary="Text of token ids")
async def detokenize(body: DetokenizeRequest, _: PrincipalDep, services: ServicesDep) -> DetokenizeResponse:
    served = services.registry.resolve(body.model or _default_model(services))
    return DetokenizeResponse(prompt=await served.backend.detokenize(body.tokens))
