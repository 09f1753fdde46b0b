"""Tool-call rate on 20 held-out prompts (bench/tool_call_cases.py), greedy, tool_choice "auto".

A case counts when the answer holds at least one call to the expected function whose arguments
are valid under that function's schema. One run, side by side, on the same GGUF (the 0.5B, or
the 1.5B with `--size 1.5b` after `pip install 'coderapi[embedded-1.5b]'`):
- `embedded`: coderapi in-process on the embedded llama.cpp engine, lazy tool grammar off
  (the behaviour before it) and on;
- `llama-server`: llama.cpp's own server (built by scripts/build_llama.sh, `--jinja`), its
  /v1/chat/completions with the same tools: the baseline;
- `upstream`: coderapi (backend upstream, upstream_mode coder, upstream_api llama-server) in
  front of that llama-server, lazy grammar off and on.
Requests are sequential (one at a time); times are wall seconds per request.

`--set dev` runs the development set instead (tool_call_dev_cases.py): cases that must call a
tool, scored like the held-out ones, and cases where no offered tool fits, which pass when the
answer holds no call (a prompt that calls more must not call where it should not).
`--system-hint TEXT` adds TEXT to the request's system message (after the model's default
system line when the request has none): a user-side nudge, measured on the same pipeline.

    .venv/bin/python bench/tool_calls.py [--targets embedded,llama-server,upstream] [--max-tokens 128]
                                         [--size 0.5b|1.5b] [--set held-out|dev] [--system-hint TEXT] [-v]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx
from jsonschema import Draft202012Validator, ValidationError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import servers  # noqa: E402
from servers import free_port  # noqa: E402
import tool_call_cases  # noqa: E402
import tool_call_dev_cases  # noqa: E402

CASE_SETS = {"held-out": tool_call_cases, "dev": tool_call_dev_cases}
DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."  # Qwen2.5's template

MODEL_CACHE = ROOT / "data" / "models"
SIZES = {"0.5b": ("Qwen/Qwen2.5-Coder-0.5B-Instruct", "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"),
         "1.5b": ("Qwen/Qwen2.5-Coder-1.5B-Instruct", "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m")}


@dataclass
class Target:
    name: str
    base_url: str  # up to /v1
    headers: dict = field(default_factory=dict)
    set_lazy: Callable[[bool], None] | None = None  # coderapi in-process: turn the lazy grammar on/off


@dataclass
class Row:
    target: str
    lazy: str
    passed: int = 0  # cases that must call: called as expected
    abstained: int = 0  # cases that must not call: answered without a call
    seconds: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{platform.node()} · {os.cpu_count()} cores · {cpu}"


def judge(case: dict, message: dict, tools: dict) -> str | None:
    """None when the answer calls the expected function with schema-valid arguments (or, for a
    case that expects none, holds no call), else why not."""
    calls = message.get("tool_calls") or []
    if case["expected"] is None:
        return f"called {', '.join(c['function']['name'] for c in calls)}" if calls else None
    if not calls:
        return f"no call: {(message.get('content') or '')[:90]!r}"
    schema = tools[case["expected"]]["function"]["parameters"]
    why = []
    for call in calls:
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        if name != case["expected"]:
            why.append(f"called {name}")
            continue
        try:
            Draft202012Validator(schema).validate(json.loads(arguments))
            return None
        except (ValueError, ValidationError) as exc:
            why.append(f"{name} arguments invalid ({str(exc).splitlines()[0][:60]}): {arguments[:80]}")
    return "; ".join(why)


def run_cases(client: httpx.Client, target: Target, lazy: str, args) -> Row:
    row = Row(target.name, lazy)
    for case in args.cases:
        messages = with_hint(case["messages"], args.system_hint)
        body = {"model": args.model_id, "messages": messages, "tools": [args.tools[t] for t in case["tools"]],
                "tool_choice": "auto", "temperature": 0, "max_tokens": args.max_tokens}
        started = time.perf_counter()
        response = client.post(f"{target.base_url}/chat/completions", json=body, headers=target.headers)
        row.seconds.append(time.perf_counter() - started)
        if response.status_code != 200:
            miss = f"HTTP {response.status_code}: {response.text[:120]}"
        else:
            choice = response.json()["choices"][0]
            miss = judge(case, choice["message"], args.tools)
            if args.verbose:
                calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or []]
                print(f"  {target.name}/{lazy} {case['id']}: {choice['finish_reason']} {calls or choice['message'].get('content')!r}"[:300])
        if miss is None:
            row.passed += case["expected"] is not None
            row.abstained += case["expected"] is None
        else:
            row.misses.append(f"{case['id']}: {miss}")
    return row


def with_hint(messages: list[dict], hint: str | None) -> list[dict]:
    if not hint:
        return messages
    if messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{hint}"}, *messages[1:]]
    return [{"role": "system", "content": f"{DEFAULT_SYSTEM}\n\n{hint}"}, *messages]


# -- the servers under test -------------------------------------------------------------------


@contextmanager
def coderapi_in_process(model_id: str, gguf: str, spec_fields: dict) -> Iterator[Target]:
    """coderapi's whole app on a loopback port in this process (so the lazy grammar can be toggled)."""
    import uvicorn

    from coderapi.app import create_app
    from coderapi.config import ModelSpec, Settings

    spec = ModelSpec(id=model_id, gguf=gguf, context_length=4096, n_parallel=1, **spec_fields)
    data_dir = tempfile.mkdtemp(prefix="coderapi-toolbench-")
    settings = Settings(data_dir=data_dir, model_cache_dir=MODEL_CACHE, models=[spec], bootstrap_admin=False)
    app = create_app(settings)
    services = app.state.services
    services.db.upgrade()

    key = servers.bench_key(services)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    servers._wait_ready(None, base + "/health")
    backend = services.registry.resolve(model_id).backend

    def set_lazy(on: bool) -> None:
        backend.spec.lazy_tool_grammar = on

    try:
        yield Target("", base + "/v1", {"Authorization": f"Bearer {key}"}, set_lazy)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@contextmanager
def llama_server(gguf: Path, threads: int) -> Iterator[Target]:
    binary = subprocess.run(["bash", str(ROOT / "scripts" / "build_llama.sh"), "server"], check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-m", str(gguf), "--jinja", "-np", "1", "-c", "4096", "-t", str(threads),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        servers._wait_ready(proc, base + "/health")
        yield Target("llama-server", base + "/v1")
    finally:
        servers._stop(proc)


def both_ways(client, target: Target, args) -> list[Row]:
    rows = []
    for lazy in args.lazy:
        target.set_lazy(lazy == "on")
        rows.append(run_cases(client, target, lazy, args))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="embedded,llama-server,upstream")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--lazy", default="off,on", help="lazy grammar settings to run for coderapi targets")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--cases", default="", help="comma-separated case ids to run (default: all)")
    parser.add_argument("--set", choices=sorted(CASE_SETS), default="held-out", help="which prompts to run")
    parser.add_argument("--system-hint", default="", help="text added to each request's system message")
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b", help="the embedded Qwen2.5-Coder to run")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    model_id, embedded = SIZES[args.size]
    cases = CASE_SETS[args.set]
    args.tools = cases.TOOLS
    wanted = set(args.cases.split(",")) if args.cases else None
    args.cases = [case for case in cases.CASES if wanted is None or case["id"] in wanted]
    args.lazy = args.lazy.split(",")
    targets = args.targets.split(",")
    from coderapi.weights.packaged import resolve_gguf

    args.model_id = model_id
    gguf = Path(resolve_gguf(embedded, MODEL_CACHE))
    rows: list[Row] = []
    with httpx.Client(timeout=600) as client:
        if "embedded" in targets:
            with coderapi_in_process(model_id, embedded, {"n_threads": args.threads}) as target:
                target.name = "coderapi embedded"
                rows += both_ways(client, target, args)
        if "llama-server" in targets or "upstream" in targets:
            with llama_server(gguf, args.threads) as server:
                if "llama-server" in targets:
                    rows.append(run_cases(client, server, "-", args))
                if "upstream" in targets:
                    root = server.base_url.removesuffix("/v1")
                    fields = {"backend": "upstream", "upstream_urls": [root + "/v1"], "upstream_mode": "coder",
                              "upstream_api": "llama-server"}
                    with coderapi_in_process(model_id, embedded, fields) as target:
                        target.name = "coderapi -> llama-server"
                        rows += both_ways(client, target, args)
    report(rows, args)


def report(rows: list[Row], args) -> None:
    calling = sum(case["expected"] is not None for case in args.cases)
    abstaining = len(args.cases) - calling
    print(f"\nTool-call rate, {calling} {args.set} prompts that need a call"
          + (f" and {abstaining} that need none" if abstaining else "") + f", greedy, tool_choice auto, max_tokens {args.max_tokens}, "
          f"{args.model_id.split('/')[-1]} q4_k_m, one request at a time")
    if args.system_hint:
        print(f"system hint: {args.system_hint!r}")
    print(f"machine: {machine()}\n")
    print(f"{'target':<28} {'lazy grammar':<13} {'rate':>11} {'no call where none fits':>24} {'mean s/request':>15}")
    for row in rows:
        rate = f"{row.passed}/{calling} {row.passed / calling:.2f}" if calling else "-"
        held_back = f"{row.abstained}/{abstaining}" if abstaining else "-"
        mean = sum(row.seconds) / len(row.seconds)
        print(f"{row.target:<28} {row.lazy:<13} {rate:>11} {held_back:>24} {mean:>15.2f}")
    for row in rows:
        for miss in row.misses:
            print(f"  miss [{row.target}, lazy {row.lazy}] {miss}")


if __name__ == "__main__":
    main()
