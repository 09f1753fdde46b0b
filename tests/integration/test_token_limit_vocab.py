"""What engines/token_limit.py relies on, on the real Qwen2.5 vocabulary (a vocabulary-only load of
the embedded GGUF): a text cut after an ASCII letter or digit before whitespace tokenizes to exactly
the first tokens of the whole text, and a prefix of one long run never counts more than the run."""

from __future__ import annotations

import inspect
import json
import os
import random

import pytest

from coderapi.engines.token_limit import _WORD_END, TooManyTokens, leading_tokens, tokenize_within
from tests.integration.embedded import embedded_gguf


@pytest.fixture(scope="module")
def tokenize():
    from llama_cpp import Llama

    vocab = Llama(model_path=str(embedded_gguf()), vocab_only=True, verbose=False)

    def tokenize(text: str, parse_special: bool = True) -> list[int]:
        return vocab.tokenize(text.encode(), add_bos=False, special=parse_special)

    return tokenize


TEXTS = [
    open(inspect.getsourcefile(os)).read()[:30_000],
    open(inspect.getsourcefile(json.decoder)).read(),
    "Über naïve café — 東京 の 天気 は 晴れ です。 Привет мир 123 456\n\t x\ty  z " * 200,
    "<|im_start|>user\nfix this <|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"a\": 1}\n</tool_call>\n" * 100,
    "   a  b\n\n  c 12  34 \t\t5 it's we'll THEY'RE    x \r\n y " * 300,
]


@pytest.mark.parametrize("text", TEXTS, ids=["os.py", "json-decoder", "unicode", "markup", "spacing"])
def test_a_cut_at_a_word_end_keeps_the_whole_texts_first_tokens(tokenize, text):
    whole = tokenize(text)
    cuts = [match.end() for match in _WORD_END.finditer(text)]
    for cut in random.Random(7).sample(cuts, min(150, len(cuts))):
        prefix = tokenize(text[:cut])
        assert whole[: len(prefix)] == prefix, repr(text[max(0, cut - 20) : cut + 20])


@pytest.mark.parametrize("unit", ["a", " ", "-", "😀", "東京天気", "ab", "\n", "0", "_é"])
def test_a_prefix_of_one_long_run_never_counts_more_than_the_run(tokenize, unit):
    run = unit * 12_000
    whole = len(tokenize(run))
    for cut in random.Random(3).sample(range(1, len(run)), 25):
        assert len(tokenize(run[:cut])) <= whole


@pytest.mark.parametrize("text", ["a" * 4_000_000, "😀" * 1_000_000, (TEXTS[0] * 200)[:4_000_000]])
def test_four_mib_past_the_context_are_refused_from_a_prefix(tokenize, text):
    seen = []

    def counting(piece: str, **options) -> list[int]:
        seen.append(len(piece))
        return tokenize(piece, **options)

    with pytest.raises(TooManyTokens) as over:
        tokenize_within(counting, text, 8191)
    assert over.value.at_least > 8191
    assert sum(seen) <= 40 * 8192, seen


def test_leading_tokens_match_the_whole_prediction(tokenize):
    text = TEXTS[0] * 20
    assert leading_tokens(tokenize, text, 4096, parse_special=False) == tokenize(text, parse_special=False)[:4096]
