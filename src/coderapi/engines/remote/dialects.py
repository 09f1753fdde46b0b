"""How the remote engine speaks to each kind of raw-completion server.

A dialect turns (prompt token ids, SamplingParams) into an HTTP body and each server-sent event of
the answer into a `ServerTokens`: the token ids it carries, the text, logprobs, and the server's
finish. Both dialects send the prompt as token ids (the gateway renders and tokenizes it, so the
server sees exactly the Coder layer's prompt) and every sampling field explicitly (servers have
their own defaults, e.g. llama-server's top_k 40 and min_p 0.05).

- `llama-server`: llama.cpp's native POST {root}/completion (tools/server, checked against the
  vendored server): `prompt` as ids, `n_predict`, `return_tokens` (each event carries its token
  id in `tokens` and the running count in `tokens_predicted`), `grammar` (GBNF), `logit_bias` as
  [[id, bias], ...], `n_probs`, `timings_per_token` (for `cache_n`, the prompt tokens served from
  its cache). It sends no event for a token that ends inside a UTF-8 character: the next event's
  `tokens_predicted` jumps, and its `content` holds the text of all of them.
- `openai-completions`: POST {base}/completions as vLLM (>= 0.10.2) and coderapi serve it:
  `prompt` as ids, `max_tokens`, `structured_outputs: {"grammar": GBNF}`, `logprobs` with
  `return_tokens_as_token_ids` (tokens come back as "token_id:N"), `stop_token_ids`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol

from coderapi.engines.base import SamplingParams, TopLogprob
from coderapi.engines.remote.errors import ProtocolError

TOKEN_ID_PREFIX = "token_id:"
MIN_LOGPROB = -9999.0  # what OpenAI sends for a log-probability of -infinity
_TOKEN_DIGITS = re.compile(r"[0-9]{1,10}")


@dataclass
class TokenLogprob:
    logprob: float
    top: list[TopLogprob] = field(default_factory=list)


@dataclass
class ServerTokens:
    """One event's worth of generation, as the server reported it."""

    ids: list[int] | None  # None: the server gave no ids back (tokenize `text` locally)
    text: str = ""
    predicted: int | None = None  # the server's running count of generated tokens, when it sends one
    logprobs: list[TokenLogprob] | None = None  # aligned with `ids`
    finish: str | None = None  # "stop" or "length": the server ended the sequence here
    cached: int | None = None  # prompt tokens served from the server's cache


class Dialect(Protocol):
    name: str
    health_path: str  # see ReplicaPool

    def url(self, base_url: str, root: str) -> str: ...

    def body(self, prompt_ids: list[int], params: SamplingParams, model: str | None) -> dict: ...

    def parse(self, data: dict) -> ServerTokens | None:
        """None: the event says nothing about tokens (a usage-only chunk, a progress event)."""


def _sampling(params: SamplingParams) -> dict:
    body = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "min_p": params.min_p,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.ignore_eos:
        body["ignore_eos"] = True
    return body


class LlamaServerDialect:
    name = "llama-server"
    health_path = "//health"

    def url(self, base_url: str, root: str) -> str:
        return root + "/completion"

    def body(self, prompt_ids: list[int], params: SamplingParams, model: str | None) -> dict:
        body = {
            "prompt": list(prompt_ids),
            "n_predict": params.max_tokens,
            "stream": True,
            "return_tokens": True,
            "cache_prompt": True,
            "timings_per_token": True,
            "repeat_penalty": params.repetition_penalty,
            **_sampling(params),
        }
        if params.grammar is not None:
            body["grammar"] = params.grammar
        if params.logit_bias:
            body["logit_bias"] = [[token, bias] for token, bias in params.logit_bias.items()]
        if params.logprobs is not None:
            body["n_probs"] = max(1, params.logprobs)  # 0 would send no probabilities at all
        return body

    def parse(self, data: dict) -> ServerTokens | None:
        timings = data.get("timings")
        cached = _count(timings.get("cache_n")) if isinstance(timings, dict) else None
        predicted = _optional_int(data.get("tokens_predicted"), "tokens_predicted")
        if _flag(data.get("stop"), "stop"):
            stop_type = data.get("stop_type")
            finish = "stop" if stop_type in ("eos", "word") else "length"
            return ServerTokens([], predicted=predicted, finish=finish, cached=cached)
        tokens = _optional_list(data.get("tokens"), "tokens") or []
        if "prompt_progress" in data and not tokens:
            return None
        ids = [_int(token, "tokens[]") for token in tokens]
        probs = _optional_list(data.get("completion_probabilities"), "completion_probabilities")
        logprobs = [self._token_probs(entry) for entry in probs] if probs else None
        return ServerTokens(ids, _text(data.get("content"), "content"), predicted, logprobs, cached=cached)

    @staticmethod
    def _token_probs(entry) -> TokenLogprob:
        entry = _object(entry, "completion_probabilities[]")
        top = [_object(t, "top_logprobs[]") for t in _optional_list(entry.get("top_logprobs"), "top_logprobs") or ()]
        alternatives = [TopLogprob(_int(t.get("id"), "top_logprobs[].id"), "", _logprob(t.get("logprob"))) for t in top]
        return TokenLogprob(_logprob(entry.get("logprob")), alternatives)


def _token_id(token) -> int | None:
    """N of "token_id:N"; None for a token named by its text (a server that ignores
    return_tokens_as_token_ids: the text is tokenized locally)."""
    if not isinstance(token, str):
        raise ProtocolError(f"a logprobs token that is not a string: {token!r:.80}")
    if not token.startswith(TOKEN_ID_PREFIX):
        return None
    digits = token[len(TOKEN_ID_PREFIX):]
    if not _TOKEN_DIGITS.fullmatch(digits):  # ASCII digits only ("²".isdigit()), and not 5000 of them
        raise ProtocolError(f"a token id that is not one: {token!r:.80}")
    return int(digits)


class OpenAICompletionsDialect:
    name = "openai-completions"
    health_path = "/models"

    def url(self, base_url: str, root: str) -> str:
        return base_url + "/completions"

    def body(self, prompt_ids: list[int], params: SamplingParams, model: str | None) -> dict:
        body = {
            "model": model,
            "prompt": list(prompt_ids),
            "max_tokens": params.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            # ids come back as "token_id:N" in the logprobs; 0 asks for the chosen token alone
            "logprobs": params.logprobs or 0,
            "return_tokens_as_token_ids": True,
            "repetition_penalty": params.repetition_penalty,
            **_sampling(params),
        }
        if params.top_k <= 0:
            body["top_k"] = -1  # vLLM's "disabled"; coderapi reads any value below 1 the same way
        if params.min_p <= 0:
            del body["min_p"]  # off is both servers' default; coderapi refuses an explicit 0
        if params.grammar is not None:
            body["structured_outputs"] = {"grammar": params.grammar}
        if params.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in params.logit_bias.items()}
        if params.stop_token_ids:
            body["stop_token_ids"] = sorted(params.stop_token_ids)
        return body

    def parse(self, data: dict) -> ServerTokens | None:
        cached = self._cached(data.get("usage"))
        choices = _optional_list(data.get("choices"), "choices")
        if not choices:
            return None
        choice = _object(choices[0], "choices[]")
        finish = choice.get("finish_reason")
        if finish not in (None, "stop", "length"):
            raise ProtocolError(f"finish_reason {finish!r:.80}")  # vLLM's "abort" among them: a failed sequence
        ids, logprobs = self._tokens(_object(choice.get("logprobs"), "logprobs"))
        return ServerTokens(ids, _text(choice.get("text"), "text"), None, logprobs, finish, cached)

    @staticmethod
    def _cached(usage) -> int | None:
        """usage.prompt_tokens_details.cached_tokens, when it is a count (it only informs usage)."""
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        return _count(details.get("cached_tokens")) if isinstance(details, dict) else None

    @staticmethod
    def _tokens(logprobs: dict) -> tuple[list[int] | None, list[TokenLogprob] | None]:
        tokens = _optional_list(logprobs.get("tokens"), "logprobs.tokens")
        if tokens is None:
            return None, None
        ids = [_token_id(t) for t in tokens]
        if any(i is None for i in ids):
            return None, None  # a server that ignores return_tokens_as_token_ids: tokenize the text
        values = _optional_list(logprobs.get("token_logprobs"), "token_logprobs") or [None] * len(ids)
        tops = _optional_list(logprobs.get("top_logprobs"), "top_logprobs") or [None] * len(ids)
        entries = []
        for value, top in zip(values, tops):
            named = _object(top, "top_logprobs[]").items()
            alternatives = [TopLogprob(i, "", _logprob(lp)) for name, lp in named if (i := _token_id(name)) is not None]
            chosen = _logprob(value) if value is not None else 0.0
            entries.append(TokenLogprob(chosen, sorted(alternatives, key=lambda t: -t.logprob)))
        return ids, entries


# -- reading an upstream's fields: a value of the wrong type is a ProtocolError, never a TypeError --


def _object(value, what: str) -> dict:
    """A JSON object; null or absent reads as {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not an object: {value!r:.80}")
    return value


def _optional_list(value, what: str) -> list | None:
    if value is not None and not isinstance(value, list):
        raise ProtocolError(f"{what} is not a list: {value!r:.80}")
    return value


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{what} is not a string: {value!r:.80}")
    return value


def _int(value, what: str) -> int:
    if type(value) is not int:  # bool is an int subclass; 1.0 is no token id
        raise ProtocolError(f"{what} is not an integer: {value!r:.80}")
    return value


def _flag(value, what: str) -> bool:
    if value is not None and type(value) is not bool:
        raise ProtocolError(f"{what} is not a boolean: {value!r:.80}")
    return bool(value)


def _optional_int(value, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _count(value) -> int | None:
    """A non-negative count the server reports for information only (cached prompt tokens): any
    other value is ignored rather than refused."""
    return value if type(value) is int and value >= 0 else None


def _logprob(value) -> float:
    """A log-probability. -Infinity (a token of probability 0, possible under a grammar or a
    logit bias) becomes OpenAI's -9999.0, as JSON has no infinity; NaN or +Infinity is no
    log-probability at all (Python's json reads both from a server that writes them)."""
    if type(value) not in (int, float):
        raise ProtocolError(f"a logprob that is not a number: {value!r:.80}")
    if value == -math.inf:
        return MIN_LOGPROB
    if not math.isfinite(value):
        raise ProtocolError(f"a logprob of {value!r}")
    return float(value)


DIALECTS: dict[str, type] = {"llama-server": LlamaServerDialect, "openai-completions": OpenAICompletionsDialect}


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]()
    except KeyError:
        raise ValueError(f"unknown upstream_api {name!r}; expected one of {sorted(DIALECTS)}") from None
