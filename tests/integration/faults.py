"""What the fault tests share: a client that records exactly what it received, and the check that
the usage rows reconcile with it (one row per request id the client used, the same tokens)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import httpx

from tests.api.conftest import ALIAS_ID

END_TOKENS = {"151643": -100, "151645": -100}  # Qwen2.5's <|endoftext|> and <|im_end|>: never stop early


@dataclass
class Seen:
    """One request as its client saw it."""

    request_id: str
    status: int | None = None  # HTTP status; None when the client hung up before the answer
    chunks: int = 0  # content chunks received
    text: str = field(default="", repr=False)
    finish_reason: str | None = None
    completion_tokens: int | None = None  # from the usage the server sent
    error: dict | None = None  # the error body, or the stream's error event
    done: bool = False  # `data: [DONE]` arrived
    cut: bool = False  # the client hung up before the end
    retry_after: str | None = None

    @property
    def outcome(self) -> str:
        """success | error (an error answer or error event) | cut (the client hung up)."""
        if self.cut:
            return "cut"
        if self.error is not None or self.status != 200:
            return "error"
        return "success"


def new_id(tag: str) -> str:
    return f"fault-{tag}-{uuid.uuid4().hex[:12]}"


def chat_body(prompt: str, max_tokens: int, *, stream: bool = True, endless: bool = False, model: str = ALIAS_ID) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if endless:
        body["logit_bias"] = END_TOKENS
    return body


def read_event(seen: Seen, payload: str) -> None:
    if payload == "[DONE]":
        seen.done = True
        return
    data = json.loads(payload)
    if "error" in data:
        seen.error = data["error"]
        return
    for choice in data.get("choices") or []:
        content = (choice.get("delta") or {}).get("content")
        if content:
            seen.chunks += 1
            seen.text += content
        seen.finish_reason = choice.get("finish_reason") or seen.finish_reason
    if data.get("usage"):
        seen.completion_tokens = data["usage"]["completion_tokens"]


async def stream_chat(client: httpx.AsyncClient, body: dict, request_id: str, cut_after: int | None = None,
                      seen: Seen | None = None) -> Seen:
    """Streams one chat completion; with `cut_after`, hangs up after that many content chunks.
    `seen`, when given, is filled as the answer arrives (watch it from another task)."""
    seen = seen or Seen(request_id)
    async with client.stream("POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}) as response:
        seen.status = response.status_code
        seen.retry_after = response.headers.get("retry-after")
        if response.status_code != 200:
            seen.error = json.loads(await response.aread())["error"]
            return seen
        if cut_after == 0:
            seen.cut = True
            return seen  # leaving the block unread closes the connection
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                read_event(seen, line[6:])
            if cut_after is not None and seen.chunks >= cut_after and not seen.done:
                seen.cut = True
                return seen
    return seen


def post_chat(base: str, key: str, body: dict, request_id: str, timeout: float = 120) -> Seen:
    """One request from a thread (sync): streamed or not, whole answer read."""
    seen = Seen(request_id)
    headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=headers, timeout=timeout) as response:
        seen.status = response.status_code
        seen.retry_after = response.headers.get("retry-after")
        if response.status_code != 200:
            seen.error = json.loads(response.read())["error"]
        elif body.get("stream"):
            for line in response.iter_lines():
                if line.startswith("data: "):
                    read_event(seen, line[6:])
        else:
            data = json.loads(response.read())
            seen.text = data["choices"][0]["message"]["content"] or ""
            seen.finish_reason = data["choices"][0]["finish_reason"]
            seen.completion_tokens = data["usage"]["completion_tokens"]
    return seen


@dataclass
class Row:
    request_id: str
    status: str
    completion_tokens: int
    error_code: str | None = None


def rows_from_database(db) -> Callable[[], list[Row]]:
    """Reads the usage rows through the app's own `Database`."""
    from coderapi.store.tables import UsageEvent

    def fetch() -> list[Row]:
        with db.session() as session:
            return [Row(e.request_id, e.status, e.completion_tokens, e.error_code) for e in session.query(UsageEvent)]

    return fetch


def rows_from_sqlite(path) -> Callable[[], list[Row]]:
    """Reads the usage rows of a server in another process."""
    import sqlite3

    def fetch() -> list[Row]:
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT request_id, status, completion_tokens, error_code FROM usage_events")
            return [Row(*values) for values in found.fetchall()]

    return fetch


@dataclass
class Reconciled:
    rows: dict[str, list[Row]] = field(default_factory=dict)

    def status(self, request_id: str) -> str:
        return self.rows[request_id][0].status


def reconcile(fetch: Callable[[], list[Row]], seen: list[Seen], *, unmetered: set[str] = frozenset(),
              timeout: float = 30.0) -> Reconciled:
    """Every request id a client used has exactly one usage row (except `unmetered`: refused before
    its key could be checked), and the row says what the client got: a success row with the
    completion tokens of the usage the client received, an error row for an error answer or
    event, a cancelled row for a hang-up."""
    wanted = {s.request_id for s in seen} - set(unmetered)
    deadline = time.monotonic() + timeout
    while True:  # rows are written just after the answer (and retried while the database is away)
        by_id: dict[str, list[Row]] = {}
        for row in fetch():
            by_id.setdefault(row.request_id, []).append(row)
        if wanted <= by_id.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # and no second row arrives late
    by_id = {}
    for row in fetch():
        by_id.setdefault(row.request_id, []).append(row)
    for s in seen:
        rows = by_id.get(s.request_id, [])
        if s.request_id in unmetered:
            assert rows == [], (s, rows)
            continue
        assert len(rows) == 1, f"{s.request_id}: {len(rows)} usage rows, client saw {s}"
        row = rows[0]
        if s.outcome == "success":
            assert row.status == "success", (s, row)
            assert row.completion_tokens == s.completion_tokens, (s, row)
        elif s.outcome == "cut":
            assert row.status == "cancelled", (s, row)
        else:
            assert row.status in ("error", "refused"), (s, row)
    return Reconciled({k: v for k, v in by_id.items() if k in wanted})
