"""POST /tokenize and /detokenize, for clients that budget their context.

The body is read raw and parsed by the service after the key is checked and the call is
rate-limited (a pydantic body parameter would be parsed before any dependency runs).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from coderapi.api.deps import PrincipalDep, RequestIdDep, ServicesDep
from coderapi.api.openapi import BODY_ERRORS, error_responses, openapi_body
from coderapi.protocol.completions import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse

router = APIRouter(tags=["tokenizer"])


@router.post(
    "/tokenize", response_model=TokenizeResponse, summary="Token ids of a prompt or of chat messages",
    openapi_extra=openapi_body(TokenizeRequest),
    responses=error_responses(*BODY_ERRORS, 404, 429),
)
async def tokenize(
    request: Request, principal: PrincipalDep, services: ServicesDep, request_id: RequestIdDep
) -> JSONResponse:
    answer, headers = await services.tokenizer.tokenize(await request.body(), principal, request_id)
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


@router.post(
    "/detokenize", response_model=DetokenizeResponse, summary="Text of token ids",
    openapi_extra=openapi_body(DetokenizeRequest),
    responses=error_responses(*BODY_ERRORS, 404, 429),
)
async def detokenize(
    request: Request, principal: PrincipalDep, services: ServicesDep, request_id: RequestIdDep
) -> JSONResponse:
    answer, headers = await services.tokenizer.detokenize(await request.body(), principal, request_id)
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)
