"""The model-family registry: names resolve to a family and a parser, unknown names are refused,
and a family without FIM markup refuses a suffix instead of inventing one."""

import pytest

from coderapi.backends.coder.completion_flow import completion_prompt
from coderapi.backends.coder.families import FAMILIES, ModelFamily, family_of
from coderapi.backends.coder.tool_stream import CallStart, ToolCallStream
from coderapi.errors import InvalidRequest
from coderapi.protocol.completions import CompletionRequest


def test_the_default_family_is_qwen_coder_with_its_own_parser():
    chosen = family_of("qwen2.5-coder")
    assert chosen.family is FAMILIES["qwen2.5-coder"]
    parser = chosen.tool_parser({"get_weather"}, None)
    assert isinstance(parser, ToolCallStream)
    events = parser.feed('```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```') + parser.finish()
    assert [e.name for e in events if isinstance(e, CallStart)] == ["get_weather"]


@pytest.mark.parametrize("family, parser, named", [("llama-3", None, "llama-3"), ("qwen2.5-coder", "nope", "nope")])
def test_unknown_names_are_refused_with_the_known_ones(family, parser, named):
    with pytest.raises(ValueError, match=named) as raised:
        family_of(family, parser)
    assert "qwen2.5-coder" in str(raised.value)


def test_a_family_without_fim_refuses_a_suffix_and_repo_context():
    plain = ModelFamily(name="plain", fallback_chat_template="", fim=None, tool_parser="qwen2.5-coder")
    request = CompletionRequest(model="m", prompt="def f(", suffix=")\n")
    with pytest.raises(InvalidRequest) as raised:
        completion_prompt(request, "def f(", plain.fim)
    assert raised.value.param == "suffix"
    assert completion_prompt(CompletionRequest(model="m", prompt="x"), "x", plain.fim) == "x"


def test_the_qwen_fim_markup():
    fim = FAMILIES["qwen2.5-coder"].fim
    assert fim.middle_prompt("a", "b") == "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"
    assert "<|file_sep|>" in fim.end_tokens and "<|endoftext|>" in fim.end_tokens


def test_a_model_entry_chooses_its_parser(monkeypatch):
    from coderapi.backends.coder import families
    from coderapi.backends.coder.backend import CoderBackend
    from coderapi.config import ModelSpec
    from coderapi.engines.fake import FakeEngine

    def tags_only(names, max_calls):
        return ToolCallStream(names, max_calls)

    monkeypatch.setitem(families.TOOL_PARSERS, "tags-only", tags_only)
    backend = CoderBackend(ModelSpec(id="m", backend="fake", tool_parser="tags-only"), FakeEngine())
    assert backend.tool_parser is tags_only
    with pytest.raises(ValueError, match="unknown model family"):
        CoderBackend(ModelSpec(id="m", backend="fake", family="gpt-2"), FakeEngine())
