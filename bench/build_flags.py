"""llama.cpp speed of two llama-cpp-python builds, side by side in one run (interleaved repeats).

Made to check that the AMX-free build of scripts/build_llama.sh keeps the native build's speed:
each repeat runs the same prefill and greedy decode in one interpreter, then in the other (A B A B ...),
and the ratios come from the medians.

    .venv/bin/python bench/build_flags.py --other /path/to/other/venv/bin/python [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "def quicksort(items):\n    " * 24  # ~190 tokens of prefill


def _measure(gguf: str, decode_tokens: int) -> None:
    """In the child: prefill tok/s and single-sequence greedy decode tok/s."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(gguf, n_ctx=1024, n_threads=os.cpu_count(), n_threads_batch=os.cpu_count(), verbose=False)
    tokens = llm.tokenize(PROMPT.encode())
    llm.eval(tokens[:8])  # warm-up
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    prefill = len(tokens) / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(decode_tokens):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    decode = decode_tokens / (time.perf_counter() - started)
    print(json.dumps({"prefill": prefill, "decode": decode}))


def _run(python: str, gguf: str, decode_tokens: int) -> dict:
    out = subprocess.run(
        [python, __file__, "--child", gguf, "--decode-tokens", str(decode_tokens)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _lib_info(python: str) -> str:
    code = ("import llama_cpp, importlib.metadata as m; print(m.version('llama-cpp-python'), "
            "llama_cpp.__file__)")
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--other", required=False, help="python of the environment with the other build")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _measure(args.child, args.decode_tokens)
        return
    sys.path.insert(0, str(ROOT / "src"))
    from coderapi.weights.packaged import resolve_gguf

    gguf = str(resolve_gguf("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m", ROOT / "data" / "models"))
    builds = {"this build": sys.executable, "other build": args.other}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {platform.node()} · {os.cpu_count()} cores · {cpu}")
    for name, python in builds.items():
        print(f"{name}: {python} ({_lib_info(python)})")
    results: dict[str, list[dict]] = {name: [] for name in builds}
    for repeat in range(args.repeats):
        for name, python in builds.items():
            results[name].append(_run(python, gguf, args.decode_tokens))
        print(f"repeat {repeat + 1}: " + ", ".join(
            f"{n} prefill {r[-1]['prefill']:.1f} decode {r[-1]['decode']:.1f} tok/s" for n, r in results.items()))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("prefill", "decode")} for n, rs in results.items()}
    for key in ("prefill", "decode"):
        ratio = med["this build"][key] / med["other build"][key]
        print(f"{key}: this {med['this build'][key]:.1f} tok/s, other {med['other build'][key]:.1f} tok/s, "
              f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
