"""A prompt's preparation costs what the context allows, not what the body holds, and one user's
preparations never hold everyone else's.

A 4 MiB body of one letter took the real tokenizer 6-8 s to count, only to be refused as longer
than the context, at no cost to its sender, on the threads every request is prepared on: one key
flooding /tokenize with such bodies had every other user's chat answered 503. Each route here gets
a body of 4 MiB past the context (4,096 tokens on this fake model), and the engine's tokenizer is
watched: it must be handed a few prefixes' worth, not the megabytes.
"""

from __future__ import annotations

import httpx
import pytest

from coderapi.backends.fair_pool import _OWNER
from tests.api.conftest import ALIAS_ID, SERVED_ID, launch

CONTEXT = 4096
HUGE = "a" * (4 * 1024 * 1024 - 4096)  # under the 4 MiB body limit with its JSON around it
BOUND = 16 * CONTEXT  # characters the tokenizer may be handed for one refusal (it was all 4 MiB)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    # TPM off: each refused 4 MiB body here would keep a minute's tokens counted (the rate limits apply
    # before a body is read); this module measures the work of refusing them, not their rate.
    with launch(tmp_path_factory.mktemp("prompt-work"), default_tpm=0, default_user_tpm=0) as running:
        yield running


@pytest.fixture
def tokenized(platform, monkeypatch) -> list[int]:
    """The lengths of the texts the fake engine tokenizes during the test."""
    engine = platform.services.registry.resolve(SERVED_ID).backend.engine
    seen: list[int] = []
    real = engine.tokenize

    def watched(text: str, **options) -> list[int]:
        seen.append(len(text))
        return real(text, **options)

    monkeypatch.setattr(engine, "tokenize", watched)
    return seen


def _post(platform, path: str, body: dict) -> httpx.Response:
    return httpx.post(platform.base + path, json=body, headers={"Authorization": f"Bearer {platform.key}"}, timeout=60)


def _refused(answer: httpx.Response, param: str) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", param)
    assert f"maximum context length is {CONTEXT} tokens" in error["message"] and "at least" in error["message"]


@pytest.mark.parametrize(
    "path, body, param",
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": HUGE}]}, "messages"),
        ("/v1/completions", {"prompt": HUGE}, "prompt"),
        ("/v1/completions", {"prompt": "def f(", "suffix": HUGE}, "prompt"),
        ("/v1/completions", {"prompt": "x", "repo_context": {"files": [{"path": "a.py", "content": HUGE}]}}, "prompt"),
        ("/tokenize", {"prompt": HUGE}, "prompt"),
        ("/tokenize", {"messages": [{"role": "user", "content": HUGE}]}, "messages"),
    ],
    ids=["chat", "completion", "fim-suffix", "repo-context", "tokenize", "tokenize-messages"],
)
def test_a_prompt_past_the_context_is_refused_from_a_prefix(platform, tokenized, path, body, param):
    _refused(_post(platform, path, {"model": ALIAS_ID, "max_tokens": 1, **body}), param)
    assert 0 < sum(tokenized) <= BOUND, tokenized


def test_a_prompt_that_fits_is_counted_exactly(platform, tokenized):
    text = "word " * 700  # 3,500 tokens on the fake's byte vocabulary: within the context
    answer = _post(platform, "/tokenize", {"model": ALIAS_ID, "prompt": text})
    assert answer.status_code == 200 and answer.json()["count"] == len(text.encode())


def test_a_huge_prediction_is_read_only_as_far_as_the_context(platform, tokenized):
    answer = _post(platform, "/v1/chat/completions", {
        "model": ALIAS_ID, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}],
        "prediction": {"type": "content", "content": HUGE},
    })
    assert answer.status_code == 200, answer.text
    assert sum(tokenized) <= BOUND, tokenized


def test_preparation_is_queued_as_the_requests_user(platform, monkeypatch):
    pool = platform.services.prep
    owners = []
    real = pool.run

    async def watched(work, *args):
        owners.append(_OWNER.get())
        return await real(work, *args)

    monkeypatch.setattr(pool, "run", watched)
    user_id = platform.run(platform.services.keys.authenticate_key(platform.key)).user_id
    assert platform.client().chat.completions.create(
        model=ALIAS_ID, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]).choices
    assert _post(platform, "/tokenize", {"model": ALIAS_ID, "prompt": "x" * 3000}).status_code == 200
    assert owners and set(owners) == {user_id}
