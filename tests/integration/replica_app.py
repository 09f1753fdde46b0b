"""A small OpenAI-compatible replica, run as its own process by the upstream fault tests.

    python -m tests.integration.replica_app NAME PORT [--token-delay S] [--hold S]

Every content chunk is "NAME<i> ", so a client sees which replica answered. A request whose last
message contains "hold" waits `--hold` seconds before its first byte (a replica slow to start).
Each request's last message is printed to stdout as it arrives ("received: ...").
`GET /peak` says how many chat requests are in flight and the most there were at once since
`POST /peak/reset` (a stream is in flight until its last byte is sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODEL = "replica-model"


class InFlight:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


class CountInFlight:
    """ASGI middleware: a chat request is in flight from its call until the app returns (its last
    byte sent, or its client gone)."""

    def __init__(self, app, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        self.in_flight.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.leave()


def build(name: str, token_delay: float, hold: float) -> FastAPI:
    app = FastAPI()
    in_flight = InFlight()
    app.add_middleware(CountInFlight, in_flight=in_flight)

    @app.get("/peak")
    async def peak() -> dict:
        return {"in_flight": in_flight.now, "peak": in_flight.peak}

    @app.post("/peak/reset")
    async def reset_peak() -> dict:
        in_flight.peak = in_flight.now
        return {"peak": in_flight.peak}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test", "created": 0}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        last = body["messages"][-1]["content"]
        print(f"received: {last}", flush=True)
        if hold and "hold" in last:
            await asyncio.sleep(hold)
        n = int(body.get("max_tokens") or 16)
        usage = {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}
        base = {"id": f"chatcmpl-{name}", "created": int(time.time()), "model": MODEL}
        if not body.get("stream"):
            text = "".join(f"{name}{i} " for i in range(n))
            return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}]})

        async def events():
            for i in range(n):
                await asyncio.sleep(token_delay)
                choice = {"index": 0, "delta": {"content": f"{name}{i} "}, "finish_reason": "length" if i == n - 1 else None}
                yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("port", type=int)
    parser.add_argument("--token-delay", type=float, default=0.05)
    parser.add_argument("--hold", type=float, default=0.0)
    args = parser.parse_args()
    app = build(args.name, args.token_delay, args.hold)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
