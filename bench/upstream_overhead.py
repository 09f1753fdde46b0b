"""What coderapi's Coder layer costs in front of a real llama-server, side by side in one run.

Two targets on 127.0.0.1, the same 0.5B GGUF, one llama-server process:
  raw       llama-server's own /v1/chat/completions (its chat template, its sampling)
  coderapi  `coderapi serve` with backend "upstream", upstream_mode "coder", upstream_api
            "llama-server" in front of that server: the template, tokenization and usage counting
            happen in the gateway, which sends token ids to llama-server's /completion; the key is
            authenticated, admitted, metered and priced on every request
Per target, N greedy chat requests (interleaved, the order alternating per round; each prompt is
put in llama-server's prompt cache first, so neither target pays for it alone), one at a time:
whole-answer latency (non-streamed) and time to the first content delta (streamed). Prints the
medians, the completion tokens each target generated (the same work), the ratios, and the CPU time
the gateway process spent per request (utime+stime from /proc: on a loaded machine the figure that
latency alone cannot give, since the gateway's and llama-server's threads compete for the cores).

    .venv/bin/python bench/upstream_overhead.py [--requests 10] [--max-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from servers import MODEL_CACHE, _stop, _wait_ready, bootstrap_key, free_port, llama_server  # noqa: E402

MODEL = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
GGUF = MODEL_CACHE / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PROMPTS = [
    "Write a Python function that reverses a string.",
    "Explain what a hash map is in two sentences.",
    "Write a SQL query that counts rows per day in a table named events.",
    "Name three sorting algorithms and their complexity.",
    "Write a bash one-liner that lists the ten largest files in a directory.",
]


def llama_server_binary() -> Path:
    configured = os.environ.get("CODERAPI_LLAMA_SERVER")
    if configured:
        return Path(configured)
    out = subprocess.run(["bash", str(ROOT / "scripts/build_llama.sh"), "server"], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHON": sys.executable})
    return Path(out.stdout.strip().splitlines()[-1])


@contextmanager
def gateway(upstream: str) -> Iterator[tuple[str, str, int]]:
    """`coderapi serve` with the Coder layer over `upstream` (llama-server's root); (base, key, pid)."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="coderapi-overhead-")
    model = {"id": MODEL, "backend": "upstream", "upstream_mode": "coder", "upstream_api": "llama-server",
             "upstream_urls": [upstream + "/v1"], "context_length": 2048}
    env = {**os.environ, "CODERAPI_DATA_DIR": data_dir, "CODERAPI_MODEL_CACHE_DIR": str(MODEL_CACHE),
           "CODERAPI_MODELS": json.dumps([model]), "CODERAPI_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        key = bootstrap_key(proc)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(proc, base + "/health")
        yield base, key, proc.pid
    finally:
        _stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def whole(client: httpx.Client, url: str, body: dict) -> tuple[float, int]:
    started = time.perf_counter()
    answer = client.post(url, json=body)
    answer.raise_for_status()
    return time.perf_counter() - started, answer.json()["usage"]["completion_tokens"]


def first_delta(client: httpx.Client, url: str, body: dict) -> float:
    started = time.perf_counter()
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                return time.perf_counter() - started
    raise RuntimeError("no content delta")


def measure(targets: dict[str, tuple[str, dict]], args, gateway_pid: int) -> dict[str, dict[str, list]]:
    results = {name: {"whole": [], "first": [], "tokens": [], "cpu": []} for name in targets}
    clients = {name: httpx.Client(headers=headers, timeout=300) for name, (_, headers) in targets.items()}
    for i in range(args.requests + 1):  # the first round warms both up and is not counted
        messages = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        body = {"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": args.max_tokens}
        # The prompt is evaluated once first, so both targets find it in llama-server's prompt cache
        # (whichever ran first would otherwise pay for it); the order alternates per round too.
        warm_base = targets["raw"][0]
        clients["raw"].post(warm_base + "/v1/chat/completions", json={**body, "max_tokens": 1}).raise_for_status()
        order = list(targets.items()) if i % 2 else list(reversed(targets.items()))
        for name, (base, _) in order:
            cpu = cpu_seconds(gateway_pid)
            seconds, tokens = whole(clients[name], base + "/v1/chat/completions", body)
            cpu = cpu_seconds(gateway_pid) - cpu
            first = first_delta(clients[name], base + "/v1/chat/completions", body)
            if i:
                results[name]["whole"].append(seconds)
                results[name]["first"].append(first)
                results[name]["tokens"].append(tokens)
                results[name]["cpu"].append(cpu)
    return results


def report(results: dict[str, dict[str, list]], command: list[str], args) -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.requests} requests "
          f"per target, max_tokens {args.max_tokens}, greedy, sequential")
    print("llama-server: " + " ".join(command))
    print(f"{'target':<10} {'whole p50 s':>12} {'first delta p50 s':>18} {'completion tokens':>18}")
    for name, r in results.items():
        print(f"{name:<10} {statistics.median(r['whole']):>12.3f} {statistics.median(r['first']):>18.3f} "
              f"{sum(r['tokens']):>18}")
    raw, ours = results["raw"], results["coderapi"]
    print(f"ratio coderapi/raw: whole {statistics.median(ours['whole']) / statistics.median(raw['whole']):.3f}, "
          f"first delta {statistics.median(ours['first']) / statistics.median(raw['first']):.3f}")
    added = [o - r for o, r in zip(ours["whole"], raw["whole"])]
    print(f"added per request (whole, paired): median {statistics.median(added) * 1000:.1f} ms")
    tokens = sum(ours["tokens"]) / len(ours["tokens"])
    cpu = statistics.mean(ours["cpu"])
    print(f"gateway CPU per request (non-streamed, {tokens:.0f} tokens): {cpu * 1000:.1f} ms "
          f"({cpu * 1000 / max(tokens, 1):.2f} ms per token)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    binary = llama_server_binary()
    with llama_server(binary, GGUF, args.threads, 2, 2048) as server:
        command = [str(binary), "-m", str(GGUF), "-np", "2", "-c", "4096", "-t", str(args.threads)]
        with gateway(server.base_url) as (base, key, pid):
            targets = {"raw": (server.base_url, {}), "coderapi": (base, {"Authorization": f"Bearer {key}"})}
            report(measure(targets, args, pid), command, args)


if __name__ == "__main__":
    main()
