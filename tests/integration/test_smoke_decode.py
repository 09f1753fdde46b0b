"""`coderapi smoke`: a real decode in a child process, and a failing one turned into a clear message."""

from __future__ import annotations

import pytest

from coderapi.engines.llama_cpp.smoke import OVERRIDE_VARIABLE, run_smoke
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model


def test_smoke_decode_runs_on_this_cpu():
    result = run_smoke(embedded_gguf())
    assert result.ok, result.message
    assert "tokens" in result.message


def test_a_child_that_dies_is_reported_with_the_override(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)  # llama.cpp refuses it: the child exits non-zero
    result = run_smoke(broken)
    assert not result.ok
    assert OVERRIDE_VARIABLE in result.message
