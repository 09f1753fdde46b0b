"""A request's token estimate (TPM) and worst-case cost (money reservation) count every prompt
and every choice, and the worst case is capped by the model's context."""

from __future__ import annotations

from decimal import Decimal

from coderapi.config import GenerationDefaults, ModelSpec
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest
from coderapi.services.admission import estimate_tokens
from coderapi.services.cost_estimate import TEMPLATE_ALLOWANCE, worst_case_cost, worst_case_tokens

SPEC = ModelSpec(
    id="m", backend="fake", context_length=4096, price_input_per_million=1.0, price_output_per_million=2.0,
    generation=GenerationDefaults(max_tokens=1024),
)


def test_tpm_estimate_counts_every_prompt_and_every_choice():
    request = CompletionRequest(model="m", prompt=["a", "b", "c"], n=2, best_of=4, max_tokens=10)
    assert estimate_tokens(request, 0, SPEC) == 3 * 4 * 10  # 12 sequences of 10 tokens
    ids = CompletionRequest(model="m", prompt=[1, 2, 3], n=2, max_tokens=10)  # one prompt of token ids
    assert estimate_tokens(ids, 0, SPEC) == 2 * 10


def test_chat_defaults_to_the_model_budget_for_every_choice():
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], n=3)
    assert estimate_tokens(request, 400, SPEC) == 400 // 4 + 3 * 1024


def test_worst_case_bounds_the_prompt_by_the_body_and_the_context():
    request = CompletionRequest(model="m", prompt=["x" * 10, "y" * 10], max_tokens=100, n=2)
    assert worst_case_tokens(request, 300, SPEC) == (300 + 2 * TEMPLATE_ALLOWANCE, 2 * 2 * 100)
    huge = worst_case_tokens(request, 10**7, SPEC)
    assert huge[0] == 2 * SPEC.context_length  # a prompt longer than the context is refused, not run
    big_budget = CompletionRequest(model="m", prompt="x", max_tokens=10**6)
    assert worst_case_tokens(big_budget, 10, SPEC)[1] == SPEC.context_length


def test_worst_case_cost_is_rounded_up_to_the_micro_dollar():
    request = CompletionRequest(model="m", prompt="x", max_tokens=1)
    # (1 byte + 512) tokens at $1/M plus 1 token at $2/M = $0.000515 exactly
    assert worst_case_cost(request, 1, SPEC) == Decimal("0.000515")
    cheap = SPEC.model_copy(update={"price_input_per_million": 0.07, "price_output_per_million": 0.0})
    assert worst_case_cost(request, 1, cheap) == Decimal("0.000036")  # 513 * 0.07e-6 = 0.00003591
