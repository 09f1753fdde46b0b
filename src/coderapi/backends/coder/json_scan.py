"""Follow one JSON object or array as it streams in, one character at a time.

The scanner knows where the value ends, whether it has already gone wrong, and rewrites it
without insignificant whitespace (`", "` and `": "` separators, as `json.dumps` writes them), so a
call's arguments can be streamed in fragments that join to the same text a whole parse gives.
For a top-level object it records each member's key, the span of its value in that rewritten
text and, for string values, the decoded string.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coderapi.protocol.json_text import parse_json_text

_WS = " \t\r\n"
_SCALAR = set("0123456789+-.eEtruefalsn")


@dataclass
class Member:
    key: str
    start: int  # offset of the value in `JsonScanner.text`
    end: int | None = None  # None while the value is still streaming
    string: str | None = None  # the decoded value when it is a complete string


@dataclass
class JsonScanner:
    text: str = ""  # the value so far, without insignificant whitespace
    done: bool = False
    broken: bool = False
    members: list[Member] = field(default_factory=list)
    _stack: list[str] = field(default_factory=list)
    _expect: str = "value"  # value | key | colon | after (a value just ended) | scalar
    _in_string: bool = False
    _escape: bool = False
    _raw: str = ""  # raw characters of the depth-1 string being read (key or value)
    _string_is_key: bool = False
    _key: str | None = None

    def feed(self, text: str) -> int:
        """Consume characters up to the end of the value; returns how many were used."""
        for position, char in enumerate(text):
            if self.done or self.broken:
                return position
            self._step(char)
        return len(text)

    def member(self, key: str) -> Member | None:
        return next((m for m in self.members if m.key == key), None)

    def value(self) -> object:
        """The parsed value once done; raises ValueError when it is not JSON that can be written back
        (`parse_json_text`: too deep, a huge integer, a number past a double's range)."""
        return parse_json_text(self.text)

    # -- one character ----------------------------------------------------------------------

    def _step(self, char: str) -> None:
        if self._in_string:
            self._string_char(char)
        elif self._expect == "scalar" and char in _SCALAR:
            self.text += char
        else:
            if self._expect == "scalar":
                self._value_ended()
            if char not in _WS:
                self._structural(char)

    def _string_char(self, char: str) -> None:
        self.text += char
        if self._escape:
            self._escape = False
        elif char == "\\":
            self._escape = True
        elif char == '"':
            self._in_string = False
            self._string_ended()
            return
        if len(self._stack) == 1:
            self._raw += char

    def _structural(self, char: str) -> None:
        expect = self._expect
        if char == '"' and expect in ("value", "key"):
            self._open_string(expect)
        elif char in "{[" and expect == "value":
            self._open(char)
        elif char in "}]" and (expect == "after" or (expect in ("key", "value") and self.text[-1:] in "{[")):
            self._close(char)
        elif char == "," and expect == "after" and self._stack:
            self.text += ", "
            self._expect = "key" if self._stack[-1] == "{" else "value"
        elif char == ":" and expect == "colon":
            self.text += ": "
            self._expect = "value"
            self._start_value()
        elif char in _SCALAR and expect == "value" and self._stack:
            self.text += char
            self._expect = "scalar"
        else:
            self.broken = True

    # -- structure --------------------------------------------------------------------------

    def _open_string(self, expect: str) -> None:
        self.text += '"'
        self._in_string = True
        self._raw = ""
        self._string_is_key = expect == "key"

    def _string_ended(self) -> None:
        if self._string_is_key:
            self._string_is_key = False
            self._expect = "colon"
            if len(self._stack) == 1:
                self._key = _decode(self._raw)
            return
        if len(self._stack) == 1 and self._stack[0] == "{" and self.members and self.members[-1].end is None:
            self.members[-1].string = _decode(self._raw)
        self._value_ended()

    def _open(self, char: str) -> None:
        self.text += char
        self._stack.append(char)
        self._expect = "key" if char == "{" else "value"

    def _close(self, char: str) -> None:
        if not self._stack or {"{": "}", "[": "]"}[self._stack[-1]] != char:
            self.broken = True
            return
        self.text += char
        self._stack.pop()
        self._value_ended()

    def _start_value(self) -> None:
        if len(self._stack) == 1 and self._stack[0] == "{" and self._key is not None:
            self.members.append(Member(self._key, len(self.text)))
            self._key = None

    def _value_ended(self) -> None:
        self._expect = "after"
        if not self._stack:
            self.done = True
        elif len(self._stack) == 1 and self.members and self.members[-1].end is None:
            self.members[-1].end = len(self.text)


def _decode(raw: str) -> str | None:
    try:
        return parse_json_text('"' + raw + '"')
    except ValueError:
        return None
