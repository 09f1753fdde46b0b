"""Wire models of `POST /v1/chat/completions`, ranges as in ../shared/spec (and OpenAI's extras)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from coderapi.errors import InvalidRequest
from coderapi.protocol.common import (
    LogitBias,
    Logprobs,
    StopSpec,
    StreamOptions,
    StreamUsage,
    Usage,
)
from coderapi.protocol.limits import MAX_MESSAGES, MAX_N, MAX_TOOLS, TOOL_NAME_PATTERN


class _Lenient(BaseModel):
    # Unknown keys are ignored rather than refused, as vLLM does: SDKs add fields over time.
    # Strict: "yes" is not a boolean and "3" is not a number.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class RefusalPart(_Lenient):
    type: Literal["refusal"]
    refusal: str


TextContent = Union[str, list[TextPart]]


class FunctionCall(_Lenient):
    name: str
    arguments: str  # a JSON string on the wire


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Lenient):
    role: Literal["system"]
    content: TextContent
    name: str | None = None


class DeveloperMessage(_Lenient):
    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class UserMessage(_Lenient):
    role: Literal["user"]
    content: TextContent
    name: str | None = None


class AssistantMessage(_Lenient):
    role: Literal["assistant"]
    content: Union[str, list[Annotated[Union[TextPart, RefusalPart], Field(discriminator="type")]], None] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class ToolMessage(_Lenient):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str
    name: str | None = None


ChatMessage = Annotated[
    Union[SystemMessage, DeveloperMessage, UserMessage, AssistantMessage, ToolMessage],
    Field(discriminator="role"),
]


def content_text(content: Any) -> str:
    """The plain text of a message's content (string or list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(getattr(part, "text", None) or "" for part in content)


class FunctionDefinition(_Lenient):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


class JsonSchemaFormat(_Lenient):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a json_schema object")
        return self


class Prediction(_Lenient):
    """Predicted Outputs: text the answer is expected to repeat (the file being edited)."""

    type: Literal["content"]
    content: TextContent

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(StreamUsage, _Lenient):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    echo: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0.01, le=1)
    n: int | None = Field(None, ge=1, le=MAX_N)
    stop: StopSpec = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    logit_bias: LogitBias = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    prediction: Prediction | None = None
    seed: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.001, le=0.999)
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    user: str | None = None

    @field_validator("top_k", mode="before")
    @classmethod
    def _integral_top_k(cls, value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ChatCompletionRequest":
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise InvalidRequest(
                    f"tool_choice names function {self.tool_choice.function.name!r}, "
                    "which is not among `tools`",
                    param="tool_choice",
                )
        if self.tool_choice == "required" and not self.tools:
            raise InvalidRequest("tool_choice 'required' needs `tools`", param="tool_choice")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
        return self


# ---- answers ----


class ResponseToolCallFunction(BaseModel):
    name: str
    arguments: str


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ResponseToolCallFunction


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ResponseToolCall] = Field(default_factory=list)


class ChatChoice(BaseModel):
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: Logprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaToolCallFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaToolCallFunction


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: Logprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
