"""coderapi-only checks: prefix-cache TTFT, a 500-request soak with RSS, and /metrics during load."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from loadgen import one_request, run_level
from servers import ROOT, Server

METRIC_FAMILIES = {
    "ttft histogram": "coderapi:time_to_first_token_seconds_count",
    "inter-token latency histogram": "coderapi:inter_token_latency_seconds_count",
    "e2e latency histogram": "coderapi:e2e_request_latency_seconds_count",
    "queue time histogram": "coderapi:request_queue_time_seconds_count",
    "running gauge": "coderapi:num_requests_running",
    "waiting gauge": "coderapi:num_requests_waiting",
    "prompt tokens counter": "coderapi:prompt_tokens_total",
    "generation tokens counter": "coderapi:generation_tokens_total",
    "prefix cache queries": "coderapi:prefix_cache_queries_total",
    "prefix cache hits": "coderapi:prefix_cache_hits_total",
    "KV cache usage": "coderapi:kv_cache_usage_perc",
}


def long_code_prefix(approx_tokens: int = 2100) -> str:
    """~approx_tokens of real code (this repo's own sources); Qwen's tokenizer gives ~4 characters a token."""
    text = ""
    for path in sorted((ROOT / "src" / "coderapi" / "services").glob("*.py")):
        text += f"# file: {path.name}\n{path.read_text()}\n"
        if len(text) > approx_tokens * 4.1:
            break
    return text[: int(approx_tokens * 4.1)]


async def prefix_check(server: Server) -> dict:
    system = "You are a code reviewer. The project's code follows.\n\n" + long_code_prefix()
    async with httpx.AsyncClient(headers=server.headers, timeout=600) as client:
        out = {}
        for name, question in (("first", "Summarize what the metering module does."),
                               ("second", "List the public classes in this code.")):
            body = {"model": server.model, "stream": True, "stream_options": {"include_usage": True},
                    "temperature": 0, "max_tokens": 16,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
            r = await one_request(client, f"{server.base_url}/v1/chat/completions", body)
            out[name] = {"ttft": r.ttft, "prompt_tokens": r.prompt_tokens, "cached_tokens": r.cached_tokens, "error": r.error}
    if out["first"]["ttft"] and out["second"]["ttft"]:
        out["ratio"] = out["second"]["ttft"] / out["first"]["ttft"]
    return out


async def soak(server: Server, body: dict, n: int, concurrency: int) -> dict:
    short = {**body, "max_tokens": 16}
    warm, _ = await run_level(server.base_url, server.headers, short, concurrency, 2 * concurrency)
    rss_before = server.rss_kib()
    results, wall = await run_level(server.base_url, server.headers, short, concurrency, n)
    rss_after = server.rss_kib()
    failed = [r for r in results if not r.ok]
    return {"requests": n, "concurrency": concurrency, "failed": len(failed) + sum(not r.ok for r in warm),
            "errors": sorted({r.error for r in failed})[:3], "wall_s": wall,
            "rss_before_kib": rss_before, "rss_after_kib": rss_after,
            "rss_growth_pct": 100 * (rss_after - rss_before) / rss_before}


def scrape(server: Server) -> str:
    response = httpx.get(f"{server.base_url}/metrics", headers=server.metrics_headers, timeout=10)
    response.raise_for_status()  # a refused scrape must not read as "no samples"
    return response.text


def metric_check(during: str, after: str) -> list[tuple[str, str, str, str]]:
    """(what, metric, present, value after the run) for each family the issue asks for."""
    rows = []
    for what, name in METRIC_FAMILIES.items():
        pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
        seen = pattern.search(during) or pattern.search(after)
        last = pattern.findall(after)
        value = ", ".join(v for _, v in last) if last else "—"
        rows.append((what, name, "yes" if seen else "NO", value))
    return rows


async def with_scrape(server: Server, coro) -> tuple[object, str]:
    """Runs coro and scrapes /metrics in the middle of it."""
    task = asyncio.ensure_future(coro)
    await asyncio.sleep(3)
    text = await asyncio.to_thread(scrape, server)
    return await task, text
