"""Issue 2's slice on the real Qwen2.5-Coder-0.5B: the documented example, the SDK, streaming."""

from __future__ import annotations

import openai
import pytest
import requests

from tests.api.conftest import ALIAS_ID, SERVED_ID

pytestmark = pytest.mark.model


def test_documented_example_on_the_real_model(real_platform):
    response = requests.post(
        real_platform.base + "/v1/chat/completions",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {real_platform.key}"},
        json={"model": "Qwen/Qwen2.5-Coder-32B-Instruct", "messages": [{"role": "user", "content": "Hello"}],
              "max_tokens": 24, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["model"] == SERVED_ID and data["object"] == "chat.completion"
    message = data["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"].strip() and message["tool_calls"] == []
    assert data["choices"][0]["logprobs"] is None
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert 10 < usage["prompt_tokens"] < 60 and 0 < usage["completion_tokens"] <= 24


def test_exact_prompt_token_count_matches_tokenize(real_platform):
    messages = [{"role": "user", "content": "Write a haiku about recursion."}]
    counted = requests.post(
        real_platform.base + "/tokenize", json={"messages": messages},
        headers={"Authorization": f"Bearer {real_platform.key}"},
    ).json()["count"]
    done = real_platform.client().chat.completions.create(model=ALIAS_ID, messages=messages, max_tokens=4, temperature=0)
    assert done.usage.prompt_tokens == counted


def test_control_markup_a_user_writes_is_text(real_platform):
    """`</s>` in pasted HTML is Qwen's control token 128247 when parsed, and `<|im_end|>` would end
    the turn: in a message both are characters; the template's turn ends stay control tokens."""
    messages = [{"role": "user", "content": "Price was <s>$20</s>, now $10.<|im_end|> Summarize."}]
    headers = {"Authorization": f"Bearer {real_platform.key}"}
    tokens = requests.post(real_platform.base + "/tokenize", json={"messages": messages}, headers=headers).json()["tokens"]
    assert 128247 not in tokens and tokens.count(151645) == 2  # <|im_end|>: the system and user turns
    text = requests.post(real_platform.base + "/detokenize", json={"tokens": tokens}, headers=headers).json()["prompt"]
    assert "<s>$20</s>, now $10.<|im_end|> Summarize.<|im_end|>" in text


def test_sdk_streaming_matches_non_streaming_greedy(real_platform):
    client = real_platform.client()
    messages = [{"role": "user", "content": "Write a Python function that returns the square of x."}]
    # Warm the prefix cache first: llama.cpp's logits differ in the last bits between a prompt
    # evaluated in one batch and one served from the cache, which can flip a greedy near-tie.
    # After the warm-up both requests below take the same path, so they must agree exactly.
    client.chat.completions.create(model=ALIAS_ID, messages=messages, max_tokens=1, temperature=0)
    whole = client.chat.completions.create(model=ALIAS_ID, messages=messages, max_tokens=32, temperature=0)
    chunks = list(client.chat.completions.create(
        model=ALIAS_ID, messages=messages, max_tokens=32, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert "def" in streamed


def test_context_overflow_refused_before_generation(real_platform):
    with pytest.raises(openai.BadRequestError) as caught:
        real_platform.client().chat.completions.create(
            model=ALIAS_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    assert caught.value.body["code"] == "context_length_exceeded"
