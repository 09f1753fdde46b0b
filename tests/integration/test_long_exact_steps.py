"""weight_repack off with exact speculation: coderapi turns ggml's tiled K-quant matmul off, the probe
finds the rows it tries identical to one-row steps (all 65, a token and MAX_DRAFT_ROWS drafts, where
the build's flash-attention patch runs; 60 elsewhere), and a greedy edit verified in steps that long
gives the plain answer token for token. In a fresh process: ggml reads the switch once, at the
process's first matmul, so another test's engine could have read it already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coderapi.engines.llama_cpp.invariance import probed_row_counts
from coderapi.engines.llama_cpp.scheduler import MAX_DRAFT_ROWS
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


def expected_rows() -> int:
    """Every probed row count where flash-attn-query-groups.patch runs (built for AVX-512F and DQ: every
    step's attention batch-invariant); elsewhere upstream's attention takes its tiled kernel from 64
    query rows, so the most probed below 64."""
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    most = MAX_DRAFT_ROWS + 1
    if {"avx512f", "avx512dq"} <= set(flags):
        return most
    return max(k for k in probed_row_counts(most) if k < 64)


def test_unrepacked_exact_steps_reach_every_probed_row_count_and_keep_the_greedy_answer():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GGML_CPU_TILED_MM")}
    done = subprocess.run([sys.executable, "-m", "tests.integration.long_exact_steps", str(embedded_gguf())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tiled_switch"] == "0"
    most = expected_rows()
    assert [rows for _, rows in out["checkpoints"]] == [most] * len(out["checkpoints"]) and out["beyond"] == most
    assert out["predicted"] == out["plain"]
    # The prediction is the file: most of the answer comes from drafts, many a step.
    assert out["accepted"] > len(out["plain"]) // 2, out
