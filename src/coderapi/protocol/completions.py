"""Wire models of the legacy `POST /v1/completions` (also fill-in-the-middle) and tokenizer routes."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coderapi.protocol.chat import Prediction
from coderapi.protocol.common import LogitBias, StopSpec, StreamOptions, StreamUsage, Usage
from coderapi.protocol.limits import (
    MAX_BEST_OF,
    MAX_COMPLETION_CHOICES,
    MAX_DETOKENIZE_TOKENS,
    MAX_MESSAGES,
    MAX_N,
    MAX_PROMPT_ITEMS,
    MAX_REPO_FILES,
)


class RepoFile(BaseModel):
    path: str
    content: str


class RepoContext(BaseModel):
    """Extension: repository-level context, rendered with <|repo_name|> / <|file_sep|>.

    `files` are other files of the repository (path + content); `path` names the file being
    completed, whose text is the prompt (and, with `suffix`, the fill-in-the-middle).
    """

    name: str = Field("repo", max_length=256)
    path: str | None = Field(None, max_length=1024)
    files: list[RepoFile] = Field(default_factory=list, max_length=MAX_REPO_FILES)


class StructuredOutputs(BaseModel):
    """vLLM's structured-output field (>= 0.10.2), of which coderapi takes the raw GBNF `grammar`:
    the form another gateway's remote engine sends its grammars in."""

    model_config = ConfigDict(extra="forbid", strict=True)

    grammar: str


# Each list arm stops at its first wrong item: tried against the wrong arm, 2 million token ids took
# 0.5 s on the event loop to fail two million times over (one error per item), 0.13 s so.
_ONE_WRONG_ITEM_FAILS = Field(fail_fast=True)
PromptSpec = Union[
    str,
    Annotated[list[str], _ONE_WRONG_ITEM_FAILS],
    Annotated[list[int], _ONE_WRONG_ITEM_FAILS],
    Annotated[list[list[int]], _ONE_WRONG_ITEM_FAILS],
]


class CompletionRequest(StreamUsage, BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str
    prompt: PromptSpec = ""
    suffix: str | None = None
    max_tokens: int | None = Field(16, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0.01, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    best_of: int | None = Field(None, ge=1, le=MAX_BEST_OF)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    stop: StopSpec = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: LogitBias = None
    seed: int | None = Field(None, ge=0)
    user: str | None = None
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.001, le=0.999)
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    repo_context: RepoContext | None = None
    prediction: Prediction | None = None  # Predicted Outputs, as on chat
    # vLLM extensions: a GBNF grammar the output must follow, and logprob tokens named "token_id:N"
    structured_outputs: StructuredOutputs | None = None
    return_tokens_as_token_ids: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "CompletionRequest":
        from coderapi.errors import InvalidRequest

        if self.best_of is not None and self.best_of < self.n:
            raise InvalidRequest("best_of must be at least n", param="best_of")
        if self.echo and self.suffix is not None:
            raise InvalidRequest("echo is not supported together with suffix", param="echo")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
        _check_choices(prompt_count(self.prompt), max(self.n, self.best_of or 1))
        return self


def prompt_count(prompt: Union[str, list[str], list[int], list[list[int]]]) -> int:
    """How many prompts: a string or one list of token ids is one, other lists hold one per item."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return 1
    return len(prompt)


def _check_choices(prompts: int, per_prompt: int) -> None:
    from coderapi.errors import InvalidRequest

    if prompts > MAX_PROMPT_ITEMS:
        raise InvalidRequest(
            f"prompt holds {prompts} prompts; at most {MAX_PROMPT_ITEMS} are allowed", param="prompt"
        )
    if prompts * per_prompt > MAX_COMPLETION_CHOICES:
        raise InvalidRequest(
            f"This request asks for {prompts} prompt(s) x {per_prompt} choice(s) = {prompts * per_prompt} "
            f"choices; at most {MAX_COMPLETION_CHOICES} are allowed per request (n and best_of count per prompt)",
            param="prompt" if prompts > MAX_COMPLETION_CHOICES else "n",
            code="too_many_choices",
        )


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    """Both the whole answer and each streamed chunk (OpenAI uses one object for both)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class TokenizeRequest(BaseModel):
    model: str | None = None
    prompt: str | None = None
    messages: list[dict] | None = Field(None, max_length=MAX_MESSAGES)
    add_generation_prompt: bool = True

    @model_validator(mode="after")
    def _one_input(self) -> "TokenizeRequest":
        from coderapi.errors import InvalidRequest

        if (self.prompt is None) == (self.messages is None):
            raise InvalidRequest("give exactly one of `prompt` or `messages`", param="prompt")
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeRequest(BaseModel):
    model: str | None = None
    tokens: list[int] = Field(max_length=MAX_DETOKENIZE_TOKENS)


class DetokenizeResponse(BaseModel):
    prompt: str
