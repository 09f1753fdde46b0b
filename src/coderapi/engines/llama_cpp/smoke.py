"""A real llama.cpp decode in a child process, so a build that crashes on this CPU is named, not fatal.

Why a child: an illegal instruction (SIGILL, e.g. ggml's AMX kernels on a VM that advertises AMX but
does not enable it) kills the whole interpreter; only a parent can see that and say what to do.
Run as `coderapi smoke` (after `make install`, and in `.ci/run` before the tests).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

OVERRIDE_VARIABLE = "CODERAPI_LLAMA_CMAKE_ARGS"
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
SMOKE_PROMPT = "def add(a, b):\n    return"
SMOKE_TOKENS = 8


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    message: str


def _child(gguf: str) -> None:
    """Runs in the child: load the model, decode a few greedy tokens, print what came out as JSON."""
    from llama_cpp import Llama

    started = time.monotonic()
    llm = Llama(model_path=gguf, n_ctx=256, n_batch=64, verbose=False)
    out = llm.create_completion(SMOKE_PROMPT, max_tokens=SMOKE_TOKENS, temperature=0.0)
    print(json.dumps({
        "text": out["choices"][0]["text"],
        "tokens": out["usage"]["completion_tokens"],
        "seconds": round(time.monotonic() - started, 2),
    }))


def crash_message(returncode: int, stderr: str) -> str:
    """What to tell a user whose llama.cpp build died in the test decode."""
    try:
        name = signal.Signals(-returncode).name if returncode < 0 else f"exit status {returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    hint = " (illegal instruction: the build uses CPU instructions this machine does not run)" \
        if returncode == -signal.SIGILL else ""
    tail = "\n".join(stderr.strip().splitlines()[-5:])
    return (
        f"llama.cpp crashed with {name}{hint} in a test decode.\n"
        f"Rebuild llama-cpp-python for a portable instruction set and try again:\n"
        f"  {OVERRIDE_VARIABLE}=\"{PORTABLE_CMAKE_ARGS}\" make install\n"
        f"({OVERRIDE_VARIABLE} replaces the CMake arguments of scripts/build_llama.sh; see the README.)"
        + (f"\nLast lines of its output:\n{tail}" if tail else "")
    )


def run_smoke(gguf: Path, timeout: float = 600) -> SmokeResult:
    proc = subprocess.run(
        [sys.executable, "-m", __name__, str(gguf)], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        return SmokeResult(False, crash_message(proc.returncode, proc.stderr))
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return SmokeResult(False, crash_message(proc.returncode, proc.stdout + proc.stderr))
    if result["tokens"] < 1:
        return SmokeResult(False, "llama.cpp loaded the model but decoded no token in the test decode.")
    return SmokeResult(
        True, f"llama.cpp smoke decode ok: {result['tokens']} tokens in {result['seconds']} s ({result['text']!r})"
    )


if __name__ == "__main__":
    _child(sys.argv[1])
