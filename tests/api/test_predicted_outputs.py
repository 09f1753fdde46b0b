"""Predicted Outputs (`prediction`) on chat and legacy completions, on the scripted engine: the
prediction reaches the engine as draft tokens, usage reports accepted and refused prediction
tokens (refused ones billed as completion tokens), and every parameter OpenAI refuses with a
prediction is supported here (verification samples with the request's own sampler)."""

from __future__ import annotations

import pytest

from coderapi.engines.fake import prediction_counts
from tests.api.conftest import SERVED_ID, make_account

REPLY = "def area(r):\n    return 3.14159 * r * r\n"
PREDICTION = "def size(r):\n    return 3.14159 * r * r\n"  # the old name: the reply renames it


def expected_counts(reply: str = REPLY, prediction: str = PREDICTION) -> tuple[int, int]:
    # the scripted engine counts bytes (its tokens) through the same pointer rule it documents
    return prediction_counts(list(reply.encode()) + [258], tuple(prediction.encode()))[-1]


def engine_of(platform):
    return platform.services.registry.resolve(SERVED_ID).backend.engine


def ask(platform, key=None, **extra):
    return platform.client(key).chat.completions.create(
        model=SERVED_ID, messages=[{"role": "user", "content": "repeat: " + REPLY}], **extra
    )


def test_prediction_usage_details_and_billing(platform):
    account = make_account(platform)
    completion = ask(platform, account.key, prediction={"type": "content", "content": PREDICTION})
    assert completion.choices[0].message.content == REPLY  # the prediction never changes the answer
    accepted, rejected = expected_counts()
    assert accepted > 20 and rejected > 0
    details = completion.usage.completion_tokens_details
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == (accepted, rejected)
    generated = len(REPLY.encode()) + 1
    assert completion.usage.completion_tokens == generated + rejected  # refused tokens are billed
    [row] = platform.wait_rows(account.user_id, 1)
    assert row.completion_tokens == generated + rejected
    _, params = engine_of(platform).requests[-1]
    assert params.prediction_ids == tuple(PREDICTION.encode())


def test_no_prediction_no_details(platform):
    usage = ask(platform).usage
    assert usage.completion_tokens_details is None
    assert usage.completion_tokens == len(REPLY.encode()) + 1
    assert engine_of(platform).requests[-1][1].prediction_ids is None


def test_prediction_as_text_parts(platform):
    half = len(PREDICTION) // 2
    parts = [{"type": "text", "text": PREDICTION[:half]}, {"type": "text", "text": PREDICTION[half:]}]
    completion = ask(platform, prediction={"type": "content", "content": parts})
    assert completion.usage.completion_tokens_details.accepted_prediction_tokens == expected_counts()[0]
    assert engine_of(platform).requests[-1][1].prediction_ids == tuple(PREDICTION.encode())


def test_prediction_streamed_usage(platform):
    chunks = list(
        ask(platform, prediction={"type": "content", "content": PREDICTION}, stream=True,
            stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    details = chunks[-1].usage.completion_tokens_details
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == expected_counts()


def test_prediction_on_legacy_completions(platform):
    completion = platform.client().completions.create(
        model=SERVED_ID, prompt="<|im_start|>user\nrepeat: " + REPLY + "<|im_end|>\n<|im_start|>assistant\n",
        max_tokens=200, extra_body={"prediction": {"type": "content", "content": PREDICTION}},
    )
    assert completion.choices[0].text == REPLY
    details = completion.usage.completion_tokens_details
    assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == expected_counts()
    assert engine_of(platform).requests[-1][1].prediction_ids == tuple(PREDICTION.encode())


WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 2},
        {"tools": [WEATHER_TOOL]},
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},
        {"logprobs": True, "top_logprobs": 2},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
    ],
    ids=["n", "tools", "tool_choice_required", "logprobs", "presence_penalty", "frequency_penalty"],
)
def test_parameters_openai_refuses_with_prediction_are_supported(platform, extra):
    """OpenAI answers 400 for these with a prediction; here verification samples every position
    with the request's own chain (penalties, grammar, logprobs from the raw row), so they hold."""
    engine = engine_of(platform)
    before = len(engine.requests)
    completion = ask(platform, prediction={"type": "content", "content": PREDICTION}, **extra)
    assert completion.usage.completion_tokens_details is not None
    asked = list(engine.requests)[before:]
    assert asked and all(params.prediction_ids == tuple(PREDICTION.encode()) for _, params in asked)
    if "n" in extra:
        assert len(completion.choices) == 2
        accepted, rejected = expected_counts()
        details = completion.usage.completion_tokens_details
        assert (details.accepted_prediction_tokens, details.rejected_prediction_tokens) == (2 * accepted, 2 * rejected)
    if "logprobs" in extra:
        assert completion.choices[0].logprobs.content


@pytest.mark.parametrize(
    "prediction",
    [{"type": "file", "content": "x"}, {"type": "content"}, {"type": "content", "content": 5}, "text"],
)
def test_malformed_prediction_is_a_400_naming_it(platform, prediction):
    response = platform.http(platform.key).post(
        "/v1/chat/completions",
        json={"model": SERVED_ID, "messages": [{"role": "user", "content": "hi"}], "prediction": prediction},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"] or "").startswith("prediction")
