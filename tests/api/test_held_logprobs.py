"""Answers held in memory with their logprobs are bounded (model setting `max_answer_logprobs`,
131,072 entries by default): choices × max_tokens × (1 + top logprobs) past it is 400
`logprobs_too_large` before any token, for answers not streamed and streams with tools; a plain
stream sends each entry as it goes and is not bounded."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import SERVED_ID, launch

USER = [{"role": "user", "content": "Hi"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
# 8 choices × 1,000 tokens × 21 entries = 168,000 > 131,072; 6 choices: 126,000 fit.
OVER = {"n": 8, "max_tokens": 1000, "logprobs": True, "top_logprobs": 20}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with launch(tmp_path_factory.mktemp("held-logprobs")) as running:
        yield running


def _post(platform, path: str, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {platform.key}"}
    return httpx.post(platform.base + path, json={"model": SERVED_ID, **body}, headers=headers, timeout=60)


def _refused(response: httpx.Response, param: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "logprobs_too_large", param)
    return error["message"]


def test_an_unstreamed_chat_answer_past_the_bound_is_refused_with_the_numbers(platform):
    message = _refused(_post(platform, "/v1/chat/completions", {"messages": USER, **OVER}), "top_logprobs")
    assert "168000" in message and "131072" in message and "stream" in message


def test_logprobs_without_alternatives_count_one_entry_a_token(platform):
    body = {"messages": USER, "n": 128, "max_tokens": 1025, "logprobs": True}  # 131,200 entries
    _refused(_post(platform, "/v1/chat/completions", body), "logprobs")
    body["max_tokens"] = 1024  # 131,072: at the bound
    answer = _post(platform, "/v1/chat/completions", body)
    assert answer.status_code == 200, answer.text
    assert all(c["logprobs"]["content"] for c in answer.json()["choices"])


def test_an_answer_within_the_bound_is_served(platform):
    answer = _post(platform, "/v1/chat/completions", {"messages": USER, **OVER, "n": 6})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["choices"]) == 6


def test_the_default_budget_counts_when_max_tokens_is_absent(platform):
    # No max_tokens: the model's default budget (1,024 here) × 8 × 21 = 172,032.
    body = {"messages": USER, "n": 8, "logprobs": True, "top_logprobs": 20}
    assert "172032" in _refused(_post(platform, "/v1/chat/completions", body), "top_logprobs")


def test_a_plain_stream_is_not_bounded(platform):
    with httpx.stream(
        "POST", platform.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {platform.key}"},
        json={"model": SERVED_ID, "messages": USER, "stream": True, **OVER}, timeout=60,
    ) as response:
        assert response.status_code == 200
        body = response.read().decode()
    assert '"top_logprobs"' in body and body.rstrip().endswith("data: [DONE]")


def test_a_stream_with_tools_is_bounded(platform):
    body = {"messages": USER, "stream": True, "tools": TOOLS, **OVER}
    assert "call" in _refused(_post(platform, "/v1/chat/completions", body), "top_logprobs")
    body["tool_choice"] = "none"  # no parser, nothing held: a plain stream
    assert _post(platform, "/v1/chat/completions", body).status_code == 200


def test_legacy_completions_count_every_prompt_and_choice(platform):
    body = {"prompt": ["def a():", "def b():"], "n": 4, "max_tokens": 1000, "logprobs": 20}  # 168,000
    _refused(_post(platform, "/v1/completions", body), "logprobs")
    assert _post(platform, "/v1/completions", {**body, "stream": True}).status_code == 200
    assert _post(platform, "/v1/completions", {**body, "n": 3}).status_code == 200  # 126,000


def test_the_bound_is_a_model_setting(tmp_path):
    from coderapi.config import ModelSpec

    assert ModelSpec(id="m").max_answer_logprobs == 131_072
    with launch(tmp_path) as small:
        for spec in small.services.settings.models:
            spec.max_answer_logprobs = 100
        answer = _post(small, "/v1/chat/completions", {"messages": USER, "max_tokens": 10, "logprobs": True, "top_logprobs": 9})
        assert answer.status_code == 200, answer.text  # 10 × 10 = 100
        answer = _post(small, "/v1/chat/completions", {"messages": USER, "max_tokens": 11, "logprobs": True, "top_logprobs": 9})
        _refused(answer, "top_logprobs")
