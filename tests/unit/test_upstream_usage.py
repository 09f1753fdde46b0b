"""What a pass-through request is billed (backends/upstream/usage.py): an upstream's usage only as
whole numbers >= 0, capped at the request's worst case, which never exceeds what admission held
(services/cost_estimate.py); a stream relays text only within its budget (streamed.py)."""

from __future__ import annotations

import json

import pytest

from coderapi.backends.base import RequestTally
from coderapi.backends.upstream.streamed import StreamedText
from coderapi.backends.upstream.usage import UsageCaps, usable_counts
from coderapi.config import GenerationDefaults, ModelSpec
from coderapi.protocol.chat import ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest
from coderapi.services.cost_estimate import worst_case_tokens

SPEC = ModelSpec(id="m", backend="fake", context_length=4096, generation=GenerationDefaults(max_tokens=1024))

BODIES = [
    {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": [{"role": "user", "content": "é\\u00e9 \"q\""}], "max_tokens": 16, "n": 3},
    {"model": "m", "messages": [{"role": "user", "content": "x" * 9000}], "max_completion_tokens": 10**6},
    {"model": "m", "prompt": ["a", "b", "c"], "n": 2, "best_of": 4, "max_tokens": 10},
    {"model": "m", "prompt": [1, 2, 3], "temperature": 0.5, "stream": True, "unknown_field": "ignored"},
    {"model": "m", "prompt": [], "suffix": "\n"},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_caps_never_exceed_what_admission_held(body):
    raw = json.dumps(body).encode()
    kind = ChatCompletionRequest if "messages" in body else CompletionRequest
    request = kind.model_validate_json(raw)
    caps = UsageCaps.of(request, SPEC)
    held_prompt, held_completion = worst_case_tokens(request, len(raw), SPEC)
    assert caps.completion == held_completion
    assert 0 < caps.prompt <= held_prompt


@pytest.mark.parametrize("usage, counts", [
    ({"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}, (3, 2, 1)),
    ({"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": -1}}, (3, 2, 0)),
    ({"prompt_tokens": -1, "completion_tokens": 2}, None),
    ({"prompt_tokens": 1.5, "completion_tokens": 2}, None),
    ({"prompt_tokens": 3, "completion_tokens": "7"}, None),
    ({"prompt_tokens": True, "completion_tokens": 2}, None),
    ({"prompt_tokens": 3}, None),
    ([1, 2], None),
    ("lots", None),
    (None, None),
])
def test_only_whole_numbers_are_usable_counts(usage, counts):
    found = usable_counts(usage)
    assert (found and (found.prompt, found.completion, found.cached)) == counts


@pytest.mark.parametrize("odd", [-10**9, 1.5, "7", None, float("nan")])
def test_a_tally_takes_only_whole_numbers(odd):
    tally = RequestTally()
    tally.set_counts(odd, odd, odd)
    assert (tally.prompt_tokens, tally.completion_tokens, tally.cached_tokens) == (0, 0, 0)
    tally.set_counts(5, 10**12, 9)
    assert (tally.prompt_tokens, tally.completion_tokens, tally.cached_tokens) == (5, 10**12, 5)


def _chunk(text: str, index: int = 0) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {"id": "c", "created": 0, "model": "m", "choices": [{"index": index, "delta": {"content": text}}]}
    )


def test_a_stream_past_its_characters_is_over_and_keeps_nothing_more():
    streamed = StreamedText(max_chars=10, max_bytes=10**6)
    assert streamed.add(_chunk("0123456"), 50) and streamed.add(_chunk("789", 1), 50)
    assert not streamed.add(_chunk("x"), 50)
    assert streamed.over and streamed.text() == "0123456\n789" and streamed.unfinished == [0, 1]


def test_a_stream_past_its_bytes_is_over_even_without_text():
    streamed = StreamedText(max_chars=10, max_bytes=100)
    assert streamed.add(_chunk(""), 60)
    assert not streamed.add(_chunk(""), 60) and streamed.over
