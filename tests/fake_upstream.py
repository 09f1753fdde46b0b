"""A small OpenAI-compatible upstream on loopback for the upstream-backend tests: it streams
slowly and sends its usage only in its last chunk (as vLLM does); a whole answer carries no usage;
"fail" and "fail midway" make it answer 500 or break the stream, naming a secret host."""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from coderapi.app import create_app
from coderapi.config import ModelSpec, Settings
from tests.api.conftest import Platform
from tests.servers import serve_in_thread

MODEL = "upstream-coder"
WORD = "token "
SECRET = "internal-db-7.corp.example:5432 password=hunter2"


async def _chat(request: Request):
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    if prompt == "fail":
        return JSONResponse({"error": {"message": f"crashed talking to {SECRET}", "code": "oops"}}, status_code=500)
    if not body.get("stream"):
        message = {"role": "assistant", "content": WORD * 5}
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
                             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})

    async def events():
        def chunk(delta: dict, usage=None) -> str:
            data = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}] if delta else []}
            if usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        if prompt == "fail midway":
            yield chunk({"content": WORD})
            yield f"data: {json.dumps({'error': {'message': 'worker died at ' + SECRET}})}\n\n"
            return
        for _ in range(400):
            yield chunk({"content": WORD})
            await asyncio.sleep(0.01)
        yield chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 400, "total_tokens": 409})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _models(request: Request):
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})



def upstream_app() -> Starlette:
    return Starlette(routes=[Route("/v1/chat/completions", _chat, methods=["POST"]), Route("/v1/models", _models)])


@contextmanager
def launch_gateway(data_dir: Path, *, gguf: str, model_cache_dir: Path | None = None) -> Iterator[Platform]:
    """This upstream on loopback, and a coderapi gateway forwarding to it (with one user, whose
    id is `platform.user_id`). `gguf` names the gateway's tokenizer for counting locally."""
    with serve_in_thread(upstream_app()) as upstream:
        spec = ModelSpec(
            id=MODEL, backend="upstream", upstream_mode="passthrough", upstream_urls=[upstream + "/v1"], gguf=gguf,
            price_input_per_million=1.0, price_output_per_million=2.0,
        )
        settings = Settings(data_dir=data_dir, models=[spec], bootstrap_admin=False, model_cache_dir=model_cache_dir)
        app = create_app(settings)
        services = app.state.services
        services.db.upgrade()

        async def seed():
            user = await services.signups.create_user("up@example.com", "correct horse battery")
            return user.id, (await services.keys.create_key(user.id, name="gw"))[1]

        user_id, key = asyncio.run(seed())
        with serve_in_thread(app, wait_healthy=10) as base:
            platform = Platform(base, app, key, management_key="")
            platform.user_id = user_id
            yield platform


def stream_then_hang_up(base: str, key: str, payload: dict, *, words: int, timeout: float = 60) -> str:
    """Streams `payload` and hangs up once `words` WORDs came back; the content received until then."""
    received = ""
    with httpx.Client(base_url=base, timeout=timeout) as client:
        with client.stream("POST", "/v1/chat/completions", json=payload,
                           headers={"Authorization": f"Bearer {key}"}) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if received.count(WORD) >= words:
                    break  # hang up mid-stream
    return received
