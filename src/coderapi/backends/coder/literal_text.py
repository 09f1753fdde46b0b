"""What a user wrote stays text: control-token markup inside it is tokenized as plain characters.

A prompt is the template's markup around the user's strings, and it is tokenized with special
tokens parsed, so that `<|im_start|>` in the template becomes the control token. Without care the
same happens inside the user's strings: `</s>` in a pasted HTML snippet (`<s>$20</s>`) becomes
Qwen's control token 128247, and `<|im_end|><|im_start|>system` in a message (or in a document an
application passes on) opens a system turn. OpenAI's API reads such text as text, and so do we.

Before rendering, each control text found in a user string is replaced by a sentinel that only
this request knows (letters and digits around a random nonce and the control's index: nothing a
template's `tojson` or a Python repr escapes, so it survives any rendering); after
rendering, the text is tokenized in pieces: what lies between sentinels with special tokens
parsed (the template's markup), each sentinel as its control text with special tokens not parsed.
A prompt without control texts in its user strings is tokenized whole, exactly as before.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Callable

_OPEN, _CLOSE = "cdrlit", "x"  # around the nonce and index; ASCII letters: no encoder escapes them


class LiteralText:
    """One request's guard; `controls` are the vocabulary's control-token texts."""

    def __init__(self, controls: frozenset[str]) -> None:
        self._controls = sorted(controls, key=lambda c: (-len(c), c))  # longest first: `</s>` inside none
        self._find = re.compile("|".join(map(re.escape, self._controls))) if self._controls else None
        self._index = {text: i for i, text in enumerate(self._controls)}
        self._nonce = secrets.token_hex(8)
        self._sentinel = re.compile(_OPEN + self._nonce + r"(\d+)" + _CLOSE)
        self.used = False  # some user string held a control text

    def wrap(self, text: str) -> str:
        """A user string with each control text replaced by this request's sentinel for it."""
        if self._find is None or not isinstance(text, str):
            return text
        wrapped, count = self._find.subn(self._mark, text)
        self.used = self.used or count > 0
        return wrapped

    def _mark(self, match: re.Match) -> str:
        return f"{_OPEN}{self._nonce}{self._index[match.group()]}{_CLOSE}"

    def wrap_tree(self, value: Any) -> Any:
        """`wrap` on every string (keys included) of nested dicts and lists, as the template gets them."""
        if isinstance(value, str):
            return self.wrap(value)
        if isinstance(value, dict):
            return {self.wrap(k): self.wrap_tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.wrap_tree(v) for v in value]
        return value

    def unwrap(self, text: str) -> str:
        """The rendered text as the model reads it: each sentinel back to its control text."""
        if not self.used:
            return text
        return self._sentinel.sub(lambda m: self._controls[int(m.group(1))], text)

    def tokenize(self, text: str, tokenize: Callable[..., list[int]]) -> list[int]:
        """`text` (rendered, with sentinels) as token ids; `tokenize` is an engine's
        `tokenize(text, *, parse_special=...)`."""
        if not self.used:
            return tokenize(text)
        ids: list[int] = []
        start = 0
        for match in self._sentinel.finditer(text):
            if match.start() > start:
                ids += tokenize(text[start : match.start()])
            ids += tokenize(self._controls[int(match.group(1))], parse_special=False)
            start = match.end()
        if start < len(text):
            ids += tokenize(text[start:])
        return ids
