"""POST /v1/chat/completions and /v1/completions (also without the /v1 prefix)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coderapi.api.deps import InferencePrincipalDep, RequestIdDep, ServicesDep
from coderapi.api.openapi import INFERENCE_ERRORS, openapi_body, streaming_responses
from coderapi.api.sse import sse_response
from coderapi.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.completions import Completion, CompletionRequest
from coderapi.services.inference import InferenceOutcome

router = APIRouter(tags=["inference"])


def _client_request_id(request: Request) -> str | None:
    """The caller's own id for the call (X-Client-Request-Id), kept on the usage row and in the logs."""
    return request.headers.get("x-client-request-id") or None


def _respond(outcome: InferenceOutcome) -> Response:
    if outcome.streaming:
        return sse_response(outcome.answer, outcome.headers)
    # pydantic-core writes the JSON (compact, UTF-8, as JSONResponse would), not json.dumps.
    return Response(outcome.answer.model_dump_json(), media_type="application/json", headers=outcome.headers)


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    openapi_extra=openapi_body(ChatCompletionRequest),
    responses=streaming_responses(ChatCompletionChunk, *INFERENCE_ERRORS),
    summary="Create a chat completion (JSON or server-sent events)",
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion(
    request: Request, principal: InferencePrincipalDep, services: ServicesDep, request_id: RequestIdDep
) -> Response:
    # The body is parsed by the service, so a malformed request is metered like any other.
    client_id = _client_request_id(request)
    outcome = await services.inference.chat(await request.body(), principal, request_id, client_request_id=client_id)
    return _respond(outcome)


@router.post(
    "/v1/completions",
    response_model=Completion,
    openapi_extra=openapi_body(CompletionRequest),
    responses=streaming_responses(Completion, *INFERENCE_ERRORS),
    summary="Create a completion; with `suffix`, fill-in-the-middle",
)
@router.post("/completions", include_in_schema=False)
async def create_completion(
    request: Request, principal: InferencePrincipalDep, services: ServicesDep, request_id: RequestIdDep
) -> Response:
    client_id = _client_request_id(request)
    body = await request.body()
    return _respond(await services.inference.complete(body, principal, request_id, client_request_id=client_id))
