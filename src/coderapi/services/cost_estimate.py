"""A request's size before it runs: its token estimate for the TPM limit, and its worst-case
cost for the money reservation.

Every prompt and every choice counts: a completions request with `prompt: [a, b, c]`, `n: 2`
and `best_of: 4` generates 3 x 4 sequences, each up to its completion budget.

The worst case is an upper bound, not a guess:
- prompt: the body's size in bytes, plus a fixed allowance per prompt for what the chat or FIM
  template adds (special tokens, the default system prompt, the tools preamble). A byte-level BPE
  token covers at least one byte of text, JSON escapes only make the body longer, and a token id
  in a `list[int]` prompt takes at least two bytes ("7,"); so the prompt cannot hold more tokens.
  Each prompt is also capped at the model's context (a longer one is refused, and costs nothing).
- completion: the budget (`max_completion_tokens` / `max_tokens`, else the model's default),
  capped at the context, times every choice of every prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from coderapi.config import ModelSpec
from coderapi.money import to_money
from coderapi.protocol.chat import ChatCompletionRequest

BYTES_PER_TOKEN = 4  # the TPM estimate of prompt tokens; settled with the real count
TEMPLATE_ALLOWANCE = 512  # tokens a chat/FIM template may add to one prompt beyond the body's bytes
_MILLION = Decimal(1_000_000)
_MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class RequestSize:
    prompts: int  # sequences' prompts (completions may send several)
    choices: int  # sequences generated per prompt (n, best_of)
    budget: int  # completion tokens one sequence may generate, at most

    @property
    def sequences(self) -> int:
        return self.prompts * self.choices


def count_prompts(request) -> int:
    if isinstance(request, ChatCompletionRequest):
        return 1
    prompt = getattr(request, "prompt", "")
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return len(prompt)  # list[str] or list[list[int]]: one sequence each
    return 1


def size_of(request, spec: ModelSpec | None) -> RequestSize:
    if isinstance(request, ChatCompletionRequest):
        asked = request.max_completion_tokens or request.max_tokens
    else:
        asked = getattr(request, "max_tokens", None)
    choices = max(getattr(request, "n", None) or 1, getattr(request, "best_of", None) or 1)
    default = spec.generation.max_tokens if spec is not None else 0
    budget = asked or default
    if spec is not None:
        budget = min(budget, spec.context_length)
    return RequestSize(count_prompts(request), choices, budget)


def estimate_tokens(request, body_size: int, spec: ModelSpec | None) -> int:
    """The TPM reservation: prompt (body bytes / 4) plus the budget of every sequence."""
    size = size_of(request, spec)
    return body_size // BYTES_PER_TOKEN + size.budget * size.sequences


def worst_case_tokens(request, body_size: int, spec: ModelSpec) -> tuple[int, int]:
    """(prompt tokens, completion tokens) the request cannot exceed."""
    size = size_of(request, spec)
    prompt = min(body_size + TEMPLATE_ALLOWANCE * size.prompts, spec.context_length * size.prompts)
    return prompt, size.budget * size.sequences


def worst_case_cost(request, body_size: int, spec: ModelSpec) -> Decimal:
    """USD, rounded up to the money column's six places (a hold must never be short)."""
    prompt, completion = worst_case_tokens(request, body_size, spec)
    cost = (
        prompt * Decimal(str(spec.price_input_per_million))
        + completion * Decimal(str(spec.price_output_per_million))
    ) / _MILLION
    return to_money(cost.quantize(_MICRO, rounding="ROUND_CEILING"))
