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

from dataclasses import dataclass, field
from typing import Protocol

from coderapi.engines.base import SamplingParams, TopLogprob

TOKEN_ID_PREFIX = "token_id:"


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
        cached = (data.get("timings") or {}).get("cache_n")
        if data.get("stop"):
            stop_type = data.get("stop_type")
            finish = "stop" if stop_type in ("eos", "word") else "length"
            return ServerTokens([], predicted=data.get("tokens_predicted"), finish=finish, cached=cached)
        if "prompt_progress" in data and not data.get("tokens"):
            return None
        probs = data.get("completion_probabilities")
        logprobs = None
        if probs:
            logprobs = [
                TokenLogprob(p["logprob"], [TopLogprob(t["id"], t.get("token", ""), t["logprob"]) for t in p.get("top_logprobs") or ()])
                for p in probs
            ]
        return ServerTokens(
            list(data.get("tokens") or ()), data.get("content") or "", data.get("tokens_predicted"), logprobs, cached=cached
        )


def _token_id(token) -> int | None:
    if isinstance(token, str) and token.startswith(TOKEN_ID_PREFIX) and token[len(TOKEN_ID_PREFIX):].isdigit():
        return int(token[len(TOKEN_ID_PREFIX):])
    return None


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
        usage = data.get("usage") or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        choices = data.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        ids, logprobs = self._tokens(choice.get("logprobs"))
        return ServerTokens(ids, choice.get("text") or "", None, logprobs, choice.get("finish_reason"), cached)

    @staticmethod
    def _tokens(logprobs: dict | None) -> tuple[list[int] | None, list[TokenLogprob] | None]:
        if not logprobs or logprobs.get("tokens") is None:
            return None, None
        ids = [_token_id(t) for t in logprobs["tokens"]]
        if any(i is None for i in ids):
            return None, None  # a server that ignores return_tokens_as_token_ids: tokenize the text
        values = logprobs.get("token_logprobs") or [None] * len(ids)
        tops = logprobs.get("top_logprobs") or [None] * len(ids)
        entries = []
        for value, top in zip(values, tops):
            alternatives = [TopLogprob(i, "", lp) for name, lp in (top or {}).items() if (i := _token_id(name)) is not None]
            entries.append(TokenLogprob(value if value is not None else 0.0, sorted(alternatives, key=lambda t: -t.logprob)))
        return ids, entries


DIALECTS: dict[str, type] = {"llama-server": LlamaServerDialect, "openai-completions": OpenAICompletionsDialect}


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]()
    except KeyError:
        raise ValueError(f"unknown upstream_api {name!r}; expected one of {sorted(DIALECTS)}") from None
