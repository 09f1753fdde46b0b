"""Async streaming load generator (like `vllm bench serve`): chat completions over SSE at a fixed concurrency."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import httpx


@dataclass
class Result:
    ok: bool = False
    error: str = ""
    ttft: float | None = None
    e2e: float = 0.0
    itls: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    text: str = ""  # the content deltas joined
    usage: dict = field(default_factory=dict)  # the last usage object streamed, as sent

    @property
    def tpot(self) -> float | None:
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


def _usage_tokens(chunk: dict, result: Result, content_chunks: int) -> None:
    usage = chunk.get("usage") or {}
    if usage:
        result.usage = usage
    if usage.get("completion_tokens"):
        result.output_tokens = usage["completion_tokens"]
        result.prompt_tokens = usage.get("prompt_tokens")
        details = usage.get("prompt_tokens_details") or {}
        result.cached_tokens = details.get("cached_tokens")
    timings = chunk.get("timings") or {}  # llama-server
    if timings.get("predicted_n") and not usage.get("completion_tokens"):
        result.output_tokens = timings["predicted_n"]
        result.cached_tokens = timings.get("cache_n")


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> Result:
    result = Result()
    started = time.perf_counter()
    last = None
    content_chunks = 0
    parts: list[str] = []
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = str(chunk["error"])[:200]
                    return result
                now = time.perf_counter()
                choices = chunk.get("choices") or []
                content = choices and (choices[0].get("delta") or {}).get("content")
                if content:
                    parts.append(content)
                    content_chunks += 1
                    if last is None:
                        result.ttft = now - started
                    else:
                        result.itls.append(now - last)
                    last = now
                _usage_tokens(chunk, result, content_chunks)
        result.e2e = time.perf_counter() - started
        result.text = "".join(parts)
        if not result.output_tokens:
            result.output_tokens = content_chunks  # one token per chunk when the server gives no count
        result.ok = result.ttft is not None
        if not result.ok:
            result.error = "no content"
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error
        result.error = f"{type(exc).__name__}: {exc}"[:200]
    return result


async def run_level(base_url: str, headers: dict, body: dict | Callable[[int], dict], concurrency: int,
                    n_requests: int) -> tuple[list[Result], float]:
    """n_requests, at most `concurrency` in flight; returns results and the wall time. `body` is
    every request's body, or a function of the request's index that gives it."""
    body_of = body if callable(body) else (lambda _index: body)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n_requests):
        queue.put_nowait(i)
    results: list[Result] = []
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(600.0), limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                results.append(await one_request(client, f"{base_url}/v1/chat/completions", body_of(index)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return results, wall


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarize(results: list[Result], wall: float, concurrency: int) -> dict:
    ok = [r for r in results if r.ok]
    out = sum(r.output_tokens for r in ok)
    row = {
        "concurrency": concurrency, "requests": len(results), "errors": len(results) - len(ok),
        "error_samples": sorted({r.error for r in results if not r.ok})[:3],
        "output_tokens_mean": statistics.mean([r.output_tokens for r in ok]) if ok else 0,
        "agg_tok_s": out / wall if wall else 0.0, "wall_s": wall,
        # lone-client decode speed: tokens after the first over the time after the first
        "decode_tok_s": statistics.mean([1 / r.tpot for r in ok if r.tpot]) if ok else 0.0,
    }
    series = {
        "ttft": [r.ttft for r in ok if r.ttft is not None],
        "tpot": [r.tpot for r in ok if r.tpot is not None],
        "itl": [x for r in ok for x in r.itls],
        "e2e": [r.e2e for r in ok],
    }
    for name, values in series.items():
        for q in (50, 90, 99):
            row[f"{name}_p{q}"] = pct(values, q)
    return row
