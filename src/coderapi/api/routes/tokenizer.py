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


def _route(path: str, summary: str, body: type, answer: type):
    """A tokenizer route: a raw JSON body of type `body` (parsed by the service), an `answer` back."""
    return router.post(
        path, response_model=answer, summary=summary, openapi_extra=openapi_body(body),
        responses=error_responses(*BODY_ERRORS, 404, 429),
    )


def _json(answer_and_headers: tuple) -> JSONResponse:
    answer, headers = answer_and_headers
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


@_route("/tokenize", "Token ids of a prompt or of chat messages", TokenizeRequest, TokenizeResponse)
async def tokenize(request: Request, principal: PrincipalDep, services: ServicesDep, request_id: RequestIdDep) -> JSONResponse:
    return _json(await services.tokenizer.tokenize(await request.body(), principal, request_id))


@_route("/detokenize", "Text of token ids", DetokenizeRequest, DetokenizeResponse)
async def detokenize(request: Request, principal: PrincipalDep, services: ServicesDep, request_id: RequestIdDep) -> JSONResponse:
    return _json(await services.tokenizer.detokenize(await request.body(), principal, request_id))
