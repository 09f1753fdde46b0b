"""engines/token_limit.py: a prompt is tokenized only until it is known to be longer than the limit.

The tokenizers here are stand-ins with the property the module relies on (a cut after a letter or
digit before whitespace splits no token); tests/integration/test_token_limit_vocab.py checks that
property on the real Qwen2.5 vocabulary.
"""

from __future__ import annotations

import re

import pytest

from coderapi.engines.token_limit import PromptTokens, TooManyTokens, leading_tokens, tokenize_within


class Recording:
    """A tokenizer that remembers how many characters it was given in all."""

    def __init__(self, split):
        self._split = split
        self.chars = 0
        self.calls = 0

    def __call__(self, text: str, **options) -> list[int]:
        self.chars += len(text)
        self.calls += 1
        return self._split(text)


def by_word(text: str) -> list[int]:  # a word and the whitespace after it: one token
    return [len(piece) for piece in re.findall(r"\S+\s*|\s+", text)]


def by_ten_chars(text: str) -> list[int]:  # one token per ten characters: a long run is few tokens
    return [ord(text[i]) for i in range(0, len(text), 10)]


def test_a_text_within_the_limit_is_tokenized_whole_and_exactly():
    text = "def f(x):\n    return x + 1\n" * 2000
    tokenize = Recording(by_word)
    assert tokenize_within(tokenize, text, len(by_word(text))) == by_word(text)


def test_a_text_past_the_limit_is_refused_after_a_prefix_not_the_whole():
    text = "alpha beta gamma\n" * 250_000  # 4.25 M characters, 750,000 tokens
    tokenize = Recording(by_word)
    with pytest.raises(TooManyTokens) as over:
        tokenize_within(tokenize, text, 8191)
    # a clean cut: the count reached is a prefix's exact count, past the limit and below the whole's
    assert 8191 < over.value.at_least <= len(by_word(text))
    assert tokenize.chars <= 16 * 8192, tokenize.chars  # the 4 MiB are never tokenized


def test_one_token_over_the_limit_is_refused_and_at_the_limit_is_not():
    text = "word " * 20_000
    assert len(tokenize_within(by_word, text, 20_000)) == 20_000
    with pytest.raises(TooManyTokens) as over:
        tokenize_within(by_word, text, 19_999)
    assert over.value.at_least > 19_999


def test_a_sparse_text_is_read_in_growing_prefixes_until_it_is_known_to_be_over():
    text = "x" * 2_000_000  # one long run: 200,000 tokens of ten characters, no clean cut anywhere
    tokenize = Recording(by_ten_chars)
    with pytest.raises(TooManyTokens) as over:
        tokenize_within(tokenize, text, 8191)
    assert 8191 < over.value.at_least <= 200_000
    assert tokenize.chars <= 40 * 8192 * 10 // 8, tokenize.chars  # a few prefixes of what was needed


def test_a_long_run_that_fits_is_never_refused_by_a_prefix():
    # no clean cut: a prefix over the limit by less than the slack does not prove the whole is over
    text = "x" * 81_910  # 8,191 tokens of ten characters, longer than the first prefix
    assert len(tokenize_within(Recording(by_ten_chars), text, 8191)) == 8191


def test_a_prompt_in_pieces_counts_them_together():
    tokens = PromptTokens(by_word, 10)
    assert tokens("a b c d e ") == [2] * 5
    with pytest.raises(TooManyTokens) as over:
        tokens("f g h i j k ")
    assert over.value.at_least == 11
    assert tokens.count == 5


def test_options_reach_the_tokenizer():
    seen = []
    tokenize_within(lambda text, **options: seen.append(options) or [1], "x", 5, parse_special=False)
    assert seen == [{"parse_special": False}]


def test_leading_tokens_are_the_first_tokens_of_the_whole_text():
    text = "one two three four\n" * 100_000
    tokenize = Recording(by_word)
    assert leading_tokens(tokenize, text, 5000) == by_word(text)[:5000]
    assert tokenize.chars <= 16 * 5001
    assert leading_tokens(by_word, "short text", 5000) == by_word("short text")
