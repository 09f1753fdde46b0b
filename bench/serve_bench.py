"""Serving benchmark, like `vllm bench serve`: coderapi next to llama-cpp-python's server and llama.cpp's llama-server.

Each server is started here on 127.0.0.1, one at a time, on the same GGUF, warmed up with one request,
then driven with streamed chat completions at each concurrency (same prompt, greedy, max_tokens).
The headline repeats also send distinct prompts at the top concurrency (varied_prompts.py): time to
first token with nothing to reuse, as users send them, beside the shared-prompt line.
coderapi also gets a prefix-cache check, a soak (RSS before/after) and a /metrics check.
Writes docs/benchmarks.md and docs/benchmarks-plot.png.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/serve_bench.py [--llama-server /path/to/llama-server] [--concurrency 1,2,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402
from varied_prompts import varied_prompt  # noqa: E402

PROMPT = ("Write a complete Python module implementing a thread-safe LRU cache class with get, put, delete, "
          "resize and stats methods, full docstrings and type hints, followed by pytest unit tests for every method.")


def machine_info(args, gguf: Path) -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lserver = "not run"
    if args.llama_server:
        v = subprocess.run([args.llama_server, "--version"], capture_output=True, text=True)
        lserver = (v.stdout + v.stderr).strip().splitlines()[0] if (v.stdout + v.stderr).strip() else "?"
    return {
        "date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{cpu}, {os.cpu_count()} cores", "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(), "coderapi": md.version("coderapi"),
        "llama-cpp-python": md.version("llama-cpp-python"), "llama-server": lserver,
        "model": f"{gguf.name} (same file for every server)",
        "workload": f"streamed chat completions, temperature 0, max_tokens {args.max_tokens}, "
                    f"{args.rounds} requests per client per level; prompt: “{PROMPT[:60]}…”",
        "servers": f"coderapi n_parallel 8, 8192 tokens/sequence; llama-server -np {args.parallel} "
                   f"-c {args.parallel * args.ctx_per_seq} -t {args.threads}; llama-cpp-python server "
                   f"--n_threads {args.threads} --n_ctx 8192",
    }


async def sweep(server: servers.Server, args, body: dict, scrape_at: int | None = None):
    await loadgen.run_level(server.base_url, server.headers, body, 1, 1)  # warm-up
    rows, during = [], ""
    for c in args.concurrency:
        coro = loadgen.run_level(server.base_url, server.headers, body, c, c * args.rounds)
        if c == scrape_at:
            (results, wall), during = await scenarios.with_scrape(server, coro)
        else:
            results, wall = await coro
        row = loadgen.summarize(results, wall, c)
        rows.append(row)
        print(f"  {server.name} c={c}: {row['agg_tok_s']:.1f} tok/s, ttft p50 {row['ttft_p50']}, "
              f"errors {row['errors']}, out {row['output_tokens_mean']:.0f}", flush=True)
    return rows, during


async def headline(server: servers.Server, args, top: int, rep: int) -> dict:
    """The measures the targets are about, on a freshly started server."""
    body = body_for(server, args.max_tokens)
    await loadgen.run_level(server.base_url, server.headers, body, 1, 1)  # warm-up
    lone = loadgen.summarize(*await loadgen.run_level(server.base_url, server.headers, body, 1, args.rounds), 1)
    busy = loadgen.summarize(*await loadgen.run_level(server.base_url, server.headers, body, top, top * args.rounds), top)
    # the same varied prompts for every server in one repeat (each is freshly started), new ones the next
    varied = varied_bodies(server, args.max_tokens, offset=rep * top * args.rounds)
    busy_varied = loadgen.summarize(*await loadgen.run_level(server.base_url, server.headers, varied, top,
                                                             top * args.rounds), top)
    out = {"agg_tok_s": busy["agg_tok_s"], "ttft_p50": busy["ttft_p50"], "decode_tok_s": lone["decode_tok_s"],
           "agg_tok_s_varied": busy_varied["agg_tok_s"], "ttft_p50_varied": busy_varied["ttft_p50"],
           "errors": busy["errors"] + lone["errors"] + busy_varied["errors"]}
    print(f"  headline {server.name}: {out}", flush=True)
    return out


def start(name: str, args, gguf: Path):
    if name.startswith("coderapi"):
        return servers.coderapi(gguf, model_settings=None if name == "coderapi" else {"weight_repack": False},
                                name=name)
    if name == "llama-server":
        return servers.llama_server(Path(args.llama_server), gguf, args.threads, args.parallel, args.ctx_per_seq)
    return servers.llama_cpp_python(gguf, args.threads, 8192)


def varied_bodies(server: servers.Server, max_tokens: int, offset: int):
    """Request i gets its own prompt (varied_prompts.py): each one prefills, none is cached."""
    shared = body_for(server, max_tokens)
    return lambda index: {**shared, "messages": [{"role": "user", "content": varied_prompt(offset + index)}]}


def body_for(server: servers.Server, max_tokens: int) -> dict:
    return {"model": server.model, "stream": True, "stream_options": {"include_usage": True},
            "temperature": 0, "max_tokens": max_tokens, "messages": [{"role": "user", "content": PROMPT}],
            **server.extra}


async def main(args) -> None:
    from coderapi.weights.packaged import resolve_gguf

    gguf = Path(resolve_gguf(args.model, servers.MODEL_CACHE))
    meta = {"info": machine_info(args, gguf), "concurrency": args.concurrency, "rounds": args.rounds}
    print(json.dumps(meta["info"], indent=1), flush=True)
    sweeps, prefix, soak, metrics, headlines = {}, None, None, None, {}
    top = max(args.concurrency)
    docs = servers.ROOT / "docs"

    def write() -> None:  # after every phase, so a cut-short run still leaves a report
        if args.json:
            (docs / "benchmarks.json").write_text(json.dumps(
                {"meta": meta, "sweeps": sweeps, "prefix": prefix, "soak": soak}, indent=1, default=str))
        report.write(docs / "benchmarks.md", meta, sweeps, prefix, soak, metrics, headlines)
        report.plot(sweeps, docs / "benchmarks-plot.png")

    with servers.coderapi(gguf) as s:
        sweeps[s.name], during = await sweep(s, args, body_for(s, args.max_tokens), scrape_at=top)
        prefix = await scenarios.prefix_check(s)
        print("  prefix:", prefix, flush=True)
        metrics = scenarios.metric_check(during, scenarios.scrape(s))
    write()
    if args.llama_server:
        with servers.llama_server(Path(args.llama_server), gguf, args.threads, args.parallel, args.ctx_per_seq) as s:
            sweeps[s.name], _ = await sweep(s, args, body_for(s, args.max_tokens))
        write()
    if not args.skip_llama_cpp_python:
        with servers.llama_cpp_python(gguf, args.threads, 8192) as s:
            sweeps[s.name], _ = await sweep(s, args, body_for(s, args.max_tokens))
        write()
    # Interleaved repeats (A, B, C, A, B, C, ...) of the measures with targets: a slow drift of
    # the machine (other tenants of the host) then hits every server alike instead of one.
    names = ["coderapi"] + (["coderapi (no repack)"] if args.with_no_repack else []) + (["llama-server"] if args.llama_server else []) + (
        [] if args.skip_llama_cpp_python else ["llama-cpp-python server"])
    for rep in range(args.headline_reps):
        for name in names:
            with start(name, args, gguf) as s:
                headlines.setdefault(name, []).append(await headline(s, args, top, rep))
        write()
    if args.soak:  # last: the longest phase, on a fresh coderapi
        with servers.coderapi(gguf) as s:
            soak = await scenarios.soak(s, body_for(s, args.max_tokens), args.soak, args.soak_concurrency)
            print("  soak:", soak, flush=True)
        write()
    print("wrote docs/benchmarks.md and docs/benchmarks-plot.png")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded:qwen2.5-coder-0.5b-instruct-q4_k_m")
    p.add_argument("--llama-server", help="path to llama.cpp's llama-server binary (optional)")
    p.add_argument("--concurrency", default="1,2,4,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="requests per client at each level")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--parallel", type=int, default=8, help="llama-server -np")
    p.add_argument("--ctx-per-seq", type=int, default=8192, help="llama-server context per sequence (coderapi's default)")
    p.add_argument("--headline-reps", type=int, default=3,
                   help="interleaved repeats of the lone-client and top-concurrency measures (ratios use medians)")
    p.add_argument("--soak", type=int, default=500, help="soak requests against coderapi (0: skip)")
    p.add_argument("--soak-concurrency", type=int, default=8)
    p.add_argument("--skip-llama-cpp-python", action="store_true")
    p.add_argument("--with-no-repack", action="store_true",
                   help="also coderapi with weight_repack off in the interleaved headline repeats")
    p.add_argument("--json", action="store_true", help="also write docs/benchmarks.json")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
