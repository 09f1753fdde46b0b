"""POST /v1/chat/completions and /v1/completions (also without the /v1 prefix)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from coderapi.api.disconnect import ClientGone, RequestBody, unless_client_leaves
from coderapi.api.deps import InferencePrincipalDep, RequestIdDep, ServicesDep
from coderapi.api.openapi import INFERENCE_ERRORS, openapi_body, streaming_responses
from coderapi.api.sse import sse_response
from coderapi.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.completions import Completion, CompletionRequest
from coderapi.services.inference import InferenceOutcome
from coderapi.services.request_life import ClientLeft

router = APIRouter(tags=["inference"])


def _client_request_id(request: Request) -> str | None:
    """The caller's own id for the call (X-Client-Request-Id), kept on the usage row and in the logs."""
    return request.headers.get("x-client-request-id") or None


async def _answer(request: Request, work, body: RequestBody) -> Response:
    try:
        outcome = await unless_client_leaves(request, work, body)
    except (ClientGone, ClientLeft):
        return Response(status_code=499)  # nobody reads it: the usage row says client_disconnected
    return _respond(outcome)


def _respond(outcome: InferenceOutcome) -> Response:
    if outcome.streaming:
        return sse_response(outcome.answer, outcome.headers)
    # pydantic-core writes the JSON (compact, UTF-8, as JSONResponse would), not json.dumps.
    return Response(outcome.answer.model_dump_json(), media_type="application/json", headers=outcome.headers)


def _route(path: str, summary: str, body: type, answer: type, chunk: type):
    """An inference route at /v1`path` (and `path`, unlisted): a raw JSON body of type `body`,
    parsed by the service so a malformed request is metered like any other; `answer` or SSE `chunk`s back."""
    listed = router.post(
        "/v1" + path, response_model=answer, summary=summary, openapi_extra=openapi_body(body),
        responses=streaming_responses(chunk, *INFERENCE_ERRORS),
    )
    unlisted = router.post(path, include_in_schema=False)
    return lambda handler: listed(unlisted(handler))


@_route("/chat/completions", "Create a chat completion (JSON or server-sent events)",
        ChatCompletionRequest, ChatCompletion, ChatCompletionChunk)
async def create_chat_completion(
    request: Request, principal: InferencePrincipalDep, services: ServicesDep, request_id: RequestIdDep
) -> Response:
    body = RequestBody(request)  # read by the service once the key holds a slot for it
    run = services.inference.chat(body.read, principal, request_id, client_request_id=_client_request_id(request))
    return await _answer(request, run, body)


@_route("/completions", "Create a completion; with `suffix`, fill-in-the-middle", CompletionRequest, Completion, Completion)
async def create_completion(
    request: Request, principal: InferencePrincipalDep, services: ServicesDep, request_id: RequestIdDep
) -> Response:
    body = RequestBody(request)
    run = services.inference.complete(body.read, principal, request_id, client_request_id=_client_request_id(request))
    return await _answer(request, run, body)
