"""What every engine refuses when `generate` is called, before any token: the engines' shared contract.

The llama.cpp engine and the scripted one raise these same errors at the same moment (the call to
`generate`, not its first iteration), so the API tier sees on the fake what it sees on the real model.
"""

from __future__ import annotations

from coderapi.engines.base import SamplingParams
from coderapi.errors import ContextLengthExceeded, InvalidRequest


def check_request(prompt: list[int], params: SamplingParams, *, n_vocab: int, n_ctx: int) -> None:
    if not prompt:
        raise InvalidRequest("The prompt must contain at least one token.", param="prompt")
    if min(prompt) < 0 or max(prompt) >= n_vocab:
        raise InvalidRequest("The prompt contains an unknown token id.", param="prompt")
    if len(prompt) >= n_ctx:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens, but the prompt has {len(prompt)} tokens.",
            param="messages",
        )
    if params.max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
    if params.logprobs is not None and params.logprobs < 0:
        raise InvalidRequest("top_logprobs must be >= 0.", param="top_logprobs")
    if params.prediction_ids and not all(0 <= t < n_vocab for t in params.prediction_ids):
        raise InvalidRequest("The prediction contains an unknown token id.", param="prediction")
    if any(not 0 <= int(t) < n_vocab for t in params.logit_bias):
        raise InvalidRequest("logit_bias names an unknown token id.", param="logit_bias")
