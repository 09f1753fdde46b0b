"""Wire pieces shared by chat and legacy completions."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, Field

from coderapi.protocol.limits import MAX_LOGIT_BIAS, MAX_STOP_CHARS, MAX_STOP_SEQUENCES


class StreamOptions(BaseModel):
    include_usage: bool = False


class StreamUsage:
    """Mixed into the request models that stream (they define `stream` and `stream_options`)."""

    @property
    def wants_usage(self) -> bool:
        """A streamed answer ends with a usage chunk only when asked (`stream_options.include_usage`)."""
        options = self.stream_options  # type: ignore[attr-defined]
        return bool(self.stream and options is not None and options.include_usage)  # type: ignore[attr-defined]


def _check_stop(value: Union[str, list[str], None]) -> Union[str, list[str], None]:
    sequences = [value] if isinstance(value, str) else value or []
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise ValueError(f"stop accepts at most {MAX_STOP_SEQUENCES} sequences, got {len(sequences)}")
    if isinstance(value, list) and any(s == "" for s in value):
        raise ValueError("stop sequences must not be empty")
    if any(len(s) > MAX_STOP_CHARS for s in sequences):
        raise ValueError(f"each stop sequence may be at most {MAX_STOP_CHARS} characters long")
    return value


StopSpec = Annotated[Union[str, list[str], None], AfterValidator(_check_stop)]


def stop_list(stop: Union[str, list[str], None]) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


def _check_logit_bias(value: dict[str, float] | None) -> dict[str, float] | None:
    for key in value or {}:
        if not key.isascii() or not key.isdigit() or len(key) > 9:
            raise ValueError(f"logit_bias keys must be token ids, got {key[:20]!r}")
    return value


LogitBias = Annotated[
    Annotated[dict[str, Annotated[float, Field(ge=-100, le=100)]], Field(max_length=MAX_LOGIT_BIAS)] | None,
    AfterValidator(_check_logit_bias),
]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    """Predicted Outputs: prediction tokens the answer repeated, and those verified and refused.
    Refused ones are billed: `completion_tokens` includes them (OpenAI's rule)."""

    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None  # set when a prediction was sent


class TopLogprobEntry(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class LogprobEntry(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobEntry] = Field(default_factory=list)


class Logprobs(BaseModel):
    content: list[LogprobEntry] | None = None
    refusal: list[LogprobEntry] | None = None
