"""Every error is OpenAI-shaped, with the status the openai SDK maps to the right exception."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.conftest import ALIAS_ID

USER = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"15": 101}}, "logit_bias"),
        ({"min_p": 1.5}, "min_p"),
        ({"seed": "x"}, "seed"),
        ({"stream": "yes"}, "stream"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
    ],
)
def test_invalid_parameters_are_400_naming_the_param(platform, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        # extra_body overrides the body's fields, so the SDK sends each bad value as it is
        platform.client().chat.completions.create(model=ALIAS_ID, messages=USER, extra_body=extra)
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error" and error["message"]


def test_missing_model_and_malformed_json(platform):
    headers = {"Authorization": f"Bearer {platform.key}", "Content-Type": "application/json"}
    missing = httpx.post(platform.base + "/v1/chat/completions", json={"messages": USER}, headers=headers)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"
    broken = httpx.post(platform.base + "/v1/chat/completions", content=b'{"model": ', headers=headers)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    not_object = httpx.post(platform.base + "/v1/chat/completions", content=b"[1, 2]", headers=headers)
    assert not_object.status_code == 400 and set(not_object.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "fragment",
    [
        '"temperature": NaN',
        '"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object", '
        '"properties": {"x": {"type": "number", "minimum": NaN}}}}}',
        '"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": '
        '{"type": "object", "properties": {"x": {"type": "integer", "maximum": -Infinity}}}}}]',
        '"metadata": {"a": [Infinity]}',
    ],
)
def test_nan_and_infinity_are_not_json(platform, fragment):
    """Python's and pydantic's parsers read these literals as floats; JSON has no such numbers."""
    headers = {"Authorization": f"Bearer {platform.key}", "Content-Type": "application/json"}
    body = '{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], %s}' % (ALIAS_ID, fragment)
    answer = httpx.post(platform.base + "/v1/chat/completions", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_json" and "NaN, Infinity and -Infinity" in error["message"]
    finite = body.replace("-Infinity", "-1").replace("Infinity", "1").replace("NaN", "0.5")
    assert httpx.post(platform.base + "/v1/chat/completions", content=finite, headers=headers).status_code == 200
    assert "NaN" not in httpx.post(platform.base + "/v1/chat/completions", content=b'{"model": NaN',
                                   headers=headers).json()["error"]["message"]
    in_a_string = finite.replace('"content": "Hi"', '"content": "Is NaN < Infinity?"')
    assert httpx.post(platform.base + "/v1/chat/completions", content=in_a_string, headers=headers).status_code == 200


def test_authentication_errors(platform):
    with pytest.raises(openai.AuthenticationError):
        platform.client(key="cdr-not-a-real-key").chat.completions.create(model=ALIAS_ID, messages=USER)
    missing = httpx.post(platform.base + "/v1/chat/completions", json={"model": ALIAS_ID, "messages": USER})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"


def test_disabled_key_is_refused_then_works_again(platform):
    services = platform.services
    key_info = platform.run(services.keys.resolve_key(platform.key))
    platform.run(services.keys.set_key_disabled(key_info.user_id, key_info.prefix, True))
    try:
        with pytest.raises(openai.PermissionDeniedError):
            platform.client().chat.completions.create(model=ALIAS_ID, messages=USER)
    finally:
        platform.run(services.keys.set_key_disabled(key_info.user_id, key_info.prefix, False))
    assert platform.client().chat.completions.create(model=ALIAS_ID, messages=USER).choices


def test_management_key_cannot_infer(platform):
    with pytest.raises(openai.PermissionDeniedError):
        platform.client(key=platform.management_key).chat.completions.create(model=ALIAS_ID, messages=USER)


def test_unknown_model_is_404(platform):
    with pytest.raises(openai.NotFoundError) as caught:
        platform.client().chat.completions.create(model="gpt-4o", messages=USER)
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"


def test_context_length_exceeded(platform):
    with pytest.raises(openai.BadRequestError) as caught:
        platform.client().chat.completions.create(model=ALIAS_ID, messages=USER, max_tokens=100_000)
    assert caught.value.body["code"] == "context_length_exceeded"
    long = [{"role": "user", "content": "x" * 5000}]
    with pytest.raises(openai.BadRequestError) as caught:
        platform.client().chat.completions.create(model=ALIAS_ID, messages=long)
    assert caught.value.body["code"] == "context_length_exceeded"


def test_engine_failure_is_500_without_trace(platform):
    with pytest.raises(openai.InternalServerError) as caught:
        platform.client().chat.completions.create(model=ALIAS_ID, messages=[{"role": "user", "content": "fail after 0"}])
    assert "Traceback" not in str(caught.value.body) and caught.value.body["type"] == "server_error"


def test_failure_mid_stream_ends_with_error_event_then_done(platform):
    body = {"model": ALIAS_ID, "messages": [{"role": "user", "content": "repeat: abcdef fail after 3"}], "stream": True}
    with httpx.stream("POST", platform.base + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {platform.key}"}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.status_code == 200
    assert lines[-1] == "data: [DONE]"
    assert '"error"' in lines[-2] and "server_error" in lines[-2]
    # the server is still fine afterwards
    assert platform.client().chat.completions.create(model=ALIAS_ID, messages=USER).choices


def test_unknown_route_is_openai_shaped(platform):
    response = httpx.get(platform.base + "/v1/nope")
    assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
