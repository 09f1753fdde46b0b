"""Where the integration tier finds the embedded 0.5B GGUF (assembled from its PyPI parts on first use)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SPEC = "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"
MODELS_DIR = Path(
    os.environ.get("CODERAPI_MODELS_DIR", Path(__file__).resolve().parents[2] / "data" / "models")
)


def embedded_gguf() -> Path:
    """The GGUF's path; skips the test where llama-cpp-python or the weights are missing."""
    pytest.importorskip("llama_cpp")
    from coderapi.weights.packaged import WeightsError, resolve_gguf

    try:
        return Path(resolve_gguf(SPEC, MODELS_DIR))
    except WeightsError as exc:
        pytest.skip(f"embedded model not available: {exc.message}")
