"""POST /tokenize and /detokenize, for clients that budget their context.

The body is read raw, by the service once the key is checked and the call holds an in-flight slot,
and parsed once it is rate-limited (a pydantic body parameter would be read and parsed before any
dependency runs).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from coderapi.api.deps import PrincipalDep, RequestIdDep, ServicesDep
from coderapi.api.disconnect import RequestBody
from coderapi.api.openapi import BODY_ERRORS, error_responses, openapi_body
from coderapi.protocol.completions import DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse
from coderapi.services.request_life import ClientLeft

router = APIRouter(tags=["tokenizer"])


def _route(path: str, summary: str, body: type, answer: type):
    """A tokenizer route: a raw JSON body of type `body` (parsed by the service), an `answer` back."""
    return router.post(
        path, response_model=answer, summary=summary, openapi_extra=openapi_body(body),
        responses=error_responses(*BODY_ERRORS, 404, 429),
    )


async def _json(call) -> Response:
    try:
        answer, headers = await call
    except ClientLeft:
        return Response(status_code=499)  # hung up while sending the body: nobody to answer
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


@_route("/tokenize", "Token ids of a prompt or of chat messages", TokenizeRequest, TokenizeResponse)
async def tokenize(request: Request, principal: PrincipalDep, services: ServicesDep, request_id: RequestIdDep) -> Response:
    return await _json(services.tokenizer.tokenize(RequestBody(request).read, principal, request_id))


@_route("/detokenize", "Text of token ids", DetokenizeRequest, DetokenizeResponse)
async def detokenize(request: Request, principal: PrincipalDep, services: ServicesDep, request_id: RequestIdDep) -> Response:
    return await _json(services.tokenizer.detokenize(RequestBody(request).read, principal, request_id))
