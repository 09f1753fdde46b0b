"""Tokenizing no more of a text than a limit needs: a prompt's cost is bounded by the context, not the body.

A 4 MiB body of one repeated letter takes llama.cpp 6-8 s to tokenize on one core, only to be
refused as longer than the context; such requests cost their sender nothing and held the
preparation threads every other request waits for. Here a long text is tokenized in growing
prefixes, and the first prefix with more tokens than the limit ends the work.

A prefix is cut, where it can be, at a word boundary the pre-tokenizer keeps: after an ASCII
letter or digit and before a space, tab or newline. Byte-level BPE tokenizes each pre-token on
its own, and no pre-token of the Qwen2 (or GPT-2 / Llama-3 style) split joins a letter or digit
to the whitespace after it, so the prefix's tokens are exactly the first tokens of the whole text
(the unit tests check it on the real vocabulary). No special token's text holds whitespace, so no
cut falls inside one. A text with no such boundary in the last half of a prefix (one long run of
letters, symbols or emoji) is cut where the prefix ends, and only a count past the limit by a
slack is taken as proof, since BPE may merge a split run back into fewer tokens.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

TokenizeFn = Callable[..., list[int]]

_WORD_END = re.compile(r"[A-Za-z0-9](?=[ \t\n])")
_CHARS_PER_TOKEN = 8  # a first prefix this many characters a token holds most prompts whole


class TooManyTokens(Exception):
    """The text holds more than the limit; `at_least` is a count it is known to reach."""

    def __init__(self, at_least: int) -> None:
        super().__init__(f"at least {at_least} tokens")
        self.at_least = at_least


def _slack(limit: int) -> int:
    """How far past the limit a prefix cut inside a pre-token must count to prove the whole is over."""
    return 64 + limit // 8


def _clean_cut(text: str, end: int) -> int | None:
    """The last word boundary (see the module's doc) in the second half of text[:end], if any."""
    last = None
    for match in _WORD_END.finditer(text, end // 2, end):
        last = match.end()
    return last


def _prefix_size(limit: int) -> int:
    return max(4096, _CHARS_PER_TOKEN * (limit + 1))


def _prefixes(tokenize: TokenizeFn, text: str, target: int, options: dict) -> Iterator[tuple[list[int], bool]]:
    """The tokens of growing prefixes of `text` shorter than it, each with whether it was cut at a word
    boundary (its tokens then exactly the whole text's first ones); each next prefix long enough to
    pass `target` tokens at the density seen so far, and at least twice the last."""
    size = _prefix_size(target)
    while size < len(text):
        cut = _clean_cut(text, size)
        ids = tokenize(text[: cut or size], **options)
        yield ids, cut is not None
        size = max(2 * size, size * (target + 1) // max(1, len(ids)) + size // 4)


def tokenize_within(tokenize: TokenizeFn, text: str, limit: int, **options) -> list[int]:
    """All of `text`'s tokens (`tokenize(text, **options)`) if they are at most `limit`; else raise
    TooManyTokens, having tokenized a prefix a few times longer than the limit needs at most."""
    slack = _slack(limit)
    for ids, exact in _prefixes(tokenize, text, limit + slack, options):
        if exact and len(ids) > limit:
            raise TooManyTokens(len(ids))
        if not exact and len(ids) > limit + slack:
            raise TooManyTokens(len(ids) - slack)
    ids = tokenize(text, **options)
    if len(ids) > limit:
        raise TooManyTokens(len(ids))
    return ids


def leading_tokens(tokenize: TokenizeFn, text: str, count: int, **options) -> list[int]:
    """The first `count` tokens of `text` (all, if it has fewer), tokenizing about as much as they need.

    Past a cut inside a pre-token the last of them may differ from the whole text's: callers use
    them as drafts (predicted outputs) or as counts capped at `count`, which the difference never changes."""
    for ids, _exact in _prefixes(tokenize, text, count, options):
        if len(ids) >= count:
            return ids[:count]
    return tokenize(text, **options)[:count]


class PromptTokens:
    """One prompt tokenized in pieces (markup, then user text, ...) against one limit in all:
    each call is `tokenize_within` the room the earlier pieces left."""

    def __init__(self, tokenize: TokenizeFn, limit: int) -> None:
        self._tokenize = tokenize
        self._limit = limit
        self.count = 0

    def __call__(self, text: str, **options) -> list[int]:
        try:
            ids = tokenize_within(self._tokenize, text, self._limit - self.count, **options)
        except TooManyTokens as over:
            raise TooManyTokens(self.count + over.at_least) from None
        self.count += len(ids)
        return ids
