"""Without llama-cpp-python's converter the Coder layer fails loudly, never serving without grammars."""

from __future__ import annotations

import sys

import pytest

from coderapi.backends.coder import grammars
from coderapi.backends.coder.backend import CoderBackend
from coderapi.config import ModelSpec
from coderapi.engines.fake import FakeEngine
from coderapi.protocol.chat import ResponseFormat


@pytest.fixture
def no_llama_cpp(monkeypatch):
    for name in [m for m in sys.modules if m == "llama_cpp" or m.startswith("llama_cpp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp...` now raises ImportError


def test_the_check_names_what_to_install(no_llama_cpp):
    with pytest.raises(RuntimeError, match=r"coderapi\[llama\]"):
        grammars.require_grammar_support()


def test_a_response_format_is_never_silently_unconstrained(no_llama_cpp):
    with pytest.raises(RuntimeError, match="llama-cpp-python"):
        grammars.response_format_grammar(ResponseFormat(type="json_object"))


def test_with_llama_cpp_a_grammar_is_built():
    grammars.require_grammar_support()
    assert grammars.response_format_grammar(ResponseFormat(type="json_object")).count("root ::=") == 1


def test_a_coder_model_does_not_start_without_it(no_llama_cpp):
    with pytest.raises(RuntimeError, match=r"coderapi\[llama\]"):
        CoderBackend(ModelSpec(id="m", backend="fake"), FakeEngine())
