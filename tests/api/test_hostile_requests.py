"""Requests built to stall or grow the server (issue 10, section 2, cases d-h) get a fast,
OpenAI-shaped answer, and the server keeps answering everyone else while it works on them."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest

from tests.api.conftest import ALIAS_ID, METRICS_TOKEN, SERVED_ID, launch
from tests.servers import raw_chat_post

USER = [{"role": "user", "content": "Hi"}]
NOT_BLOCKED = 0.5  # seconds: a loose bound for /health while a hostile request is processed


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with launch(tmp_path_factory.mktemp("hostile"), default_tpm=0, default_user_tpm=0) as running:
        yield running


def _post(platform, path: str, body: dict, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or platform.key}"}
    return httpx.post(platform.base + path, json=body, headers=headers, timeout=120, **kwargs)


def _heavy_tools(count: int = 128, properties: int = 20) -> list[dict]:
    """Tools at the cap, 2,560 properties in all: real work to check and compile."""
    props = {f"field_{j}": {"type": "string"} for j in range(properties)}
    parameters = {"type": "object", "properties": props, "required": list(props)}
    return [
        {"type": "function", "function": {"name": f"tool_{i}", "description": "d" * 100, "parameters": parameters}}
        for i in range(count)
    ]


def _health_while(platform, hostile) -> tuple[list[float], list]:
    """Runs `hostile()` in a thread; the latencies of /health answered while it ran, and its results."""
    results: list = []
    worker = threading.Thread(target=lambda: results.append(hostile()))
    latencies: list[float] = []
    with httpx.Client(base_url=platform.base, timeout=30) as client:
        worker.start()
        time.sleep(0.1)
        while worker.is_alive():
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            if worker.is_alive():  # answered while the hostile request was still being processed
                latencies.append(time.monotonic() - started)
            time.sleep(0.02)
    worker.join()
    return latencies, results


# ---- (d) tools ----


def test_d_over_128_tools_is_400_naming_tools(platform):
    started = time.monotonic()
    answer = _post(platform, "/v1/chat/completions", {"model": ALIAS_ID, "messages": USER, "tools": _heavy_tools(5000, 1)})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "tools" and error["type"] == "invalid_request_error" and "128" in error["message"]
    assert time.monotonic() - started < 5  # refused while parsing, nothing compiled


def test_d_health_answers_while_128_heavy_tools_are_prepared(platform):
    body = {"model": ALIAS_ID, "messages": USER, "tools": _heavy_tools(), "tool_choice": "required", "max_tokens": 4}

    def hostile():
        return [_post(platform, "/v1/chat/completions", body).status_code for _ in range(3)]

    latencies, results = _health_while(platform, hostile)
    assert results == [[200, 200, 200]]
    assert latencies, "no /health answered while the hostile requests were processed"
    assert max(latencies) < NOT_BLOCKED, latencies


# ---- (e) prompts x n ----


def test_e_prompts_times_n_over_the_cap_is_400(platform):
    answer = _post(platform, "/v1/completions", {"model": ALIAS_ID, "prompt": ["a"] * 4000, "n": 16})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "prompt"
    answer = _post(platform, "/v1/completions", {"model": ALIAS_ID, "prompt": ["a"] * 16, "n": 16})
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["param"] == "n" and error["code"] == "too_many_choices"


def test_e_the_most_choices_allowed_run_without_overloading_the_engine(platform):
    """128 choices (8 prompts x n 16) run a few at a time: all answered, no 503 from the engine's
    waiting queue (16 on the scripted engine), and /health answers meanwhile."""
    body = {"model": ALIAS_ID, "prompt": [f"repeat: {i}" for i in range(8)], "n": 16, "max_tokens": 8}

    latencies, [answer] = _health_while(platform, lambda: _post(platform, "/v1/completions", body))
    assert answer.status_code == 200, answer.text
    choices = answer.json()["choices"]
    assert sorted(c["index"] for c in choices) == list(range(128))
    assert all(c["finish_reason"] for c in choices)
    assert all(latency < NOT_BLOCKED for latency in latencies), latencies


# ---- (f) body size, authentication before parsing ----


def _raw_request(base: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Sends `head` (and `body`) on a socket and reads the answer's status line and body."""
    url = urlparse(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or not re.search(rb"\}\s*$", data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_f_declared_oversize_body_is_413_before_it_is_read(platform):
    """Content-Length 40 MB, and not one byte of the body sent: the 413 comes at once."""
    head = raw_chat_post(platform.key, b"", declared_length=40 * 1024 * 1024).decode()
    status, body = _raw_request(platform.base, head)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"


def test_f_chunked_oversize_body_is_413(platform):
    def chunks():
        piece = b'{"model": "' + b"x" * (1024 * 1024 - 20)
        yield piece
        for _ in range(5):  # 6 MiB in all, over the 4 MiB default, with no Content-Length
            yield b"x" * (1024 * 1024)

    answer = httpx.post(
        platform.base + "/v1/chat/completions", content=chunks(),
        headers={"Authorization": f"Bearer {platform.key}", "Content-Type": "application/json"}, timeout=60,
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert "x-request-id" in answer.headers


def test_f_other_routes_take_smaller_bodies(platform):
    api = platform.http(platform.management_key)
    answer = api.post("/v1/keys", content=json.dumps({"name": "x" * 100_000}), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert api.post("/v1/keys", json={"name": "small"}).status_code == 200


def test_f_tokenizer_routes_authenticate_before_parsing(platform):
    for path in ("/tokenize", "/detokenize"):
        answer = httpx.post(platform.base + path, content=b"{not json", headers={"Content-Type": "application/json"})
        assert answer.status_code == 401, (path, answer.text)
        answer = httpx.post(platform.base + path, content=b"{not json", headers={"Authorization": "Bearer nope"})
        assert answer.status_code == 401, (path, answer.text)


def test_f_tokenize_and_detokenize_are_metered_and_rate_limited(tmp_path):
    with launch(tmp_path) as platform:
        accounts = platform.services

        async def limited_user():
            user = await accounts.signups.create_user("tok@example.com", "correct horse battery")
            await accounts.users.set_user_limits(user.id, rpm_limit=3, tpm_limit=None)
            _, key = await accounts.keys.create_key(user.id, name="tok")
            return user.id, key

        user_id, key = platform.run(limited_user())
        tokenized = _post(platform, "/tokenize", {"prompt": "hello"}, key=key)
        assert tokenized.status_code == 200 and tokenized.json()["tokens"] == list(b"hello")
        assert "x-ratelimit-remaining-requests" in tokenized.headers
        detokenized = _post(platform, "/detokenize", {"tokens": list(b"hello")}, key=key)
        assert detokenized.json()["prompt"] == "hello"
        assert _post(platform, "/tokenize", {"messages": USER, "model": ALIAS_ID}, key=key).status_code == 200
        refused = _post(platform, "/tokenize", {"prompt": "again"}, key=key)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        rows = platform.wait_rows(user_id, 4)
        assert sorted((r.endpoint, r.status) for r in rows) == [
            ("detokenize", "success"), ("tokenize", "refused"), ("tokenize", "success"), ("tokenize", "success")
        ]
        assert all(r.cost == 0 for r in rows) and rows[0].model == SERVED_ID


def test_f_tokenizer_bodies_count_their_bytes_in_tpm_so_their_parsing_is_bounded(tmp_path):
    """A /tokenize body of 170,000 content parts took 0.8 s of the event loop to read; RPM alone
    let one key send ten a second."""
    with launch(tmp_path) as platform:
        accounts = platform.services

        async def limited_user():
            user = await accounts.signups.create_user("tpm@example.com", "correct horse battery")
            await accounts.users.set_user_limits(user.id, rpm_limit=None, tpm_limit=1000)
            _, key = await accounts.keys.create_key(user.id, name="tpm")
            return key

        key = platform.run(limited_user())
        parts = [{"type": "text", "text": "x"}] * 80  # about 2,250 bytes: 560 tokens by its size
        body = {"messages": [{"role": "user", "content": parts}], "model": ALIAS_ID}
        counted = _post(platform, "/tokenize", body, key=key)
        assert counted.status_code == 200 and int(counted.headers["x-ratelimit-remaining-tokens"]) < 500
        refused = _post(platform, "/tokenize", body, key=key)  # 560 more do not fit what is left
        assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]
        assert _post(platform, "/detokenize", {"tokens": [104, 105]}, key=key).status_code == 200  # small still fits


# ---- (g) logit_bias ----


def test_g_logit_bias_over_the_whole_vocabulary_is_400(platform):
    whole = {str(i): -1.0 for i in range(151_936)}  # Qwen2.5's vocabulary
    for path, body in (
        ("/v1/chat/completions", {"model": ALIAS_ID, "messages": USER, "logit_bias": whole}),
        ("/v1/completions", {"model": ALIAS_ID, "prompt": "x", "logit_bias": whole}),
    ):
        answer = _post(platform, path, body)
        error = answer.json()["error"]
        assert answer.status_code == 400 and error["param"] == "logit_bias" and "300" in error["message"]
    vocab = platform.services.registry.models[0].backend.engine.info.vocab_size  # the scripted engine's: 267
    allowed = {str(i): 1.0 for i in range(min(vocab, 300))}
    answer = _post(platform, "/v1/chat/completions", {"model": ALIAS_ID, "messages": USER, "logit_bias": allowed})
    assert answer.status_code == 200


# ---- (h) metrics labels ----


def test_h_unknown_models_share_one_metrics_label(platform):
    made_up = "attacker-model-" + "z" * 40
    answer = _post(platform, "/v1/chat/completions", {"model": made_up, "messages": USER})
    assert answer.status_code == 404
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    deadline = time.monotonic() + 5
    while 'model_name="unknown"' not in (text := httpx.get(platform.base + "/metrics", headers=headers).text):
        assert time.monotonic() < deadline, "the refusal was never observed"
        time.sleep(0.05)
    assert made_up not in text
    labels = set(re.findall(r'model_name="([^"]*)"', text))
    assert labels <= {SERVED_ID, "unknown"}, labels
