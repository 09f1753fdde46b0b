"""Model families: what the Coder layer needs to know about a family of models, by name.

A family says how its models are prompted and how they answer: the chat template used when a
GGUF carries none, the fill-in-the-middle and repository-context markup, the special tokens that
end a FIM middle, and which tool-call parser reads its calls. The Coder layer (chat_flow,
completion_flow, chat_stream) asks the model's family instead of hard-coding Qwen2.5-Coder, so
another family is one more entry here. A model entry picks its family with `family` and may
override the parser with `tool_parser` (config.ModelSpec).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from coderapi.backends.coder.tool_stream import ToolCallStream, ToolEvent


class ToolParser(Protocol):
    """Reads tool calls out of a choice's text as it streams (tool_stream.ToolCallStream is one)."""

    calls: list
    truncated: bool

    def feed(self, text: str) -> list[ToolEvent]: ...

    def finish(self) -> list[ToolEvent]: ...


ToolParserFactory = Callable[[set[str], "int | None"], ToolParser]


@dataclass(frozen=True)
class RepoFile:
    path: str
    content: str


@dataclass(frozen=True)
class FimFormat:
    """Fill-in-the-middle and repository-level prompt markup of a family."""

    prefix: str
    suffix: str
    middle: str
    repo_name: str
    file_sep: str
    end_tokens: tuple[str, ...]  # special tokens that end a middle (another file begins, padding)

    def middle_prompt(self, before: str, after: str) -> str:
        return f"{self.prefix}{before}{self.suffix}{after}{self.middle}"

    def repo_prompt(self, name: str, files: list[RepoFile], path: str | None, body: str) -> str:
        """The other files of the repository, then the current file's path and its text."""
        others = "".join(f"{self.file_sep}{f.path}\n{f.content}\n" for f in files)
        current = f"{self.file_sep}{path}\n" if path else self.file_sep
        return f"{self.repo_name}{name}\n{others}{current}{body}"


@dataclass(frozen=True)
class ModelFamily:
    name: str
    fallback_chat_template: str  # used only when a GGUF carries no template of its own
    fim: FimFormat | None  # None: the family has no FIM training (a `suffix` is refused)
    tool_parser: str  # the default entry of TOOL_PARSERS


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-Coder writes calls as `<tool_call>` tags, ```json fences or bare JSON (tool_stream.py).
TOOL_PARSERS: dict[str, ToolParserFactory] = {
    "qwen2.5-coder": lambda names, max_calls: ToolCallStream(names, max_calls),
}

FAMILIES: dict[str, ModelFamily] = {
    "qwen2.5-coder": ModelFamily(
        name="qwen2.5-coder",
        fallback_chat_template=CHATML_TEMPLATE,
        fim=FimFormat(
            prefix="<|fim_prefix|>",
            suffix="<|fim_suffix|>",
            middle="<|fim_middle|>",
            repo_name="<|repo_name|>",
            file_sep="<|file_sep|>",
            end_tokens=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|fim_prefix|>", "<|im_end|>"),
        ),
        tool_parser="qwen2.5-coder",
    ),
}


@dataclass(frozen=True)
class FamilyChoice:
    """A model's family with the tool parser its entry chose."""

    family: ModelFamily
    tool_parser: ToolParserFactory


def family_of(family: str, tool_parser: str | None = None) -> FamilyChoice:
    """The family and parser a model entry names; ValueError names what is unknown."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}")
    chosen = FAMILIES[family]
    parser = tool_parser or chosen.tool_parser
    if parser not in TOOL_PARSERS:
        raise ValueError(f"unknown tool_parser {parser!r}; known: {sorted(TOOL_PARSERS)}")
    return FamilyChoice(chosen, TOOL_PARSERS[parser])
