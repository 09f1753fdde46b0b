"""Single-stream decode speed: coderapi's API next to llama-cpp-python's own in-process generation.

Same GGUF, same rendered prompt, greedy, same token budget, one after the other in one run.
Also reports the model load time of `coderapi serve` (start -> /health 200).

    .venv/bin/python bench/single_stream.py [--max-tokens 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import bootstrap_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = ROOT / "data" / "models"
PROMPT = "Write a Python module implementing a singly linked list class with insert, delete, search and reverse methods, with docstrings."
MODEL_ID = "Qwen/Qwen2.5-Coder-32B-Instruct"


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return f"{platform.node()} · {os.cpu_count()} cores · {cpu}"


def llama_cpp_python_direct(gguf: Path, max_tokens: int, runs: int) -> list[float]:
    from llama_cpp import Llama

    from coderapi.backends.coder.template import ChatTemplate

    llm = Llama(str(gguf), n_ctx=4096, n_threads=os.cpu_count(), n_threads_batch=os.cpu_count(), verbose=False)
    template = ChatTemplate(llm.metadata["tokenizer.chat_template"])
    prompt = template.render([{"role": "user", "content": PROMPT}])
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    speeds = []
    for _ in range(runs):
        llm.reset()
        stamps = []
        for token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
            stamps.append(time.perf_counter())
            if llm.token_eos() == token or len(stamps) >= max_tokens:
                break
        speeds.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    del llm
    return speeds


def start_server(port: int, data_dir: str) -> tuple[subprocess.Popen, str, float]:
    env = {**os.environ, "CODERAPI_DATA_DIR": data_dir, "CODERAPI_MODEL_CACHE_DIR": str(MODEL_CACHE)}
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "coderapi", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    key = bootstrap_key(server)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise RuntimeError("coderapi serve exited")
        time.sleep(0.1)
    return server, key, time.perf_counter() - started


def coderapi_api(port: int, key: str, max_tokens: int, runs: int) -> list[float]:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    speeds = []
    for _ in range(runs):
        stamps, tokens = [], 0
        stream = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens,
            temperature=0, stream=True, stream_options={"include_usage": True},
            extra_body={"top_k": 1, "repetition_penalty": 1.0},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                stamps.append(time.perf_counter())
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        # tokens are counted by the server; the first content chunk opens the decode window
        speeds.append((tokens - 1) / (stamps[-1] - stamps[0]))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    from coderapi.weights.packaged import resolve_gguf

    gguf = resolve_gguf("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m", MODEL_CACHE)
    direct = llama_cpp_python_direct(gguf, args.max_tokens, args.runs)
    with tempfile.TemporaryDirectory() as data_dir:
        server, key, load_seconds = start_server(args.port, data_dir)
        try:
            api = coderapi_api(args.port, key, args.max_tokens, args.runs)
        finally:
            server.terminate()
            server.wait(30)
    d, a = statistics.median(direct), statistics.median(api)
    print(f"machine: {machine()}")
    print(f"model: {gguf.name}, greedy, {args.max_tokens} tokens, median of {args.runs}")
    print(f"coderapi serve load time (start -> /health 200): {load_seconds:.1f} s")
    print("| path | decode tokens/s |")
    print("|---|---|")
    print(f"| llama-cpp-python in-process (Llama.generate) | {d:.1f} |")
    print(f"| coderapi API, streamed over HTTP | {a:.1f} |")
    print(f"ratio coderapi / llama-cpp-python: {a / d:.2f}")


if __name__ == "__main__":
    main()
