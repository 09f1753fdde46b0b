"""Wire pieces shared by chat and legacy completions."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, Field


class StreamOptions(BaseModel):
    include_usage: bool = False


def _check_stop(value: Union[str, list[str], None]) -> Union[str, list[str], None]:
    if isinstance(value, list):
        if len(value) > 4:
            raise ValueError("stop accepts at most 4 sequences")
        if any(s == "" for s in value):
            raise ValueError("stop sequences must not be empty")
    return value


StopSpec = Annotated[Union[str, list[str], None], AfterValidator(_check_stop)]


def stop_list(stop: Union[str, list[str], None]) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


def _check_logit_bias(value: dict[str, float] | None) -> dict[str, float] | None:
    for key in value or {}:
        if not key.lstrip("-").isdigit() or int(key) < 0:
            raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
    return value


LogitBias = Annotated[
    dict[str, Annotated[float, Field(ge=-100, le=100)]] | None,
    AfterValidator(_check_logit_bias),
]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


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
