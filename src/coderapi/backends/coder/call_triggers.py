"""Where a tool call starts in free text: the triggers of the lazy tool-call grammar.

Qwen2.5-Coder opens a call three ways (see tool_stream.py): a `<tool_call>` tag, a ```json (or
bare ```) fence whose body opens an object with "name", or a bare `{"name"` (`[{"name"` for a
list of calls). `TriggerScanner` is fed the free text as it is generated and says, after each
piece, how much of it is certainly not part of a trigger (`safe`: it may go to the client) and
whether a trigger is complete. Text from the earliest place a trigger may still begin is held.

It reads text the way the parser does: inside a ``` block of another language (```python ...)
nothing is a call, up to its closing fence; a call fence must hold its JSON on the next line.
"""

from __future__ import annotations

from dataclasses import dataclass

from coderapi.backends.coder.json_scan import JsonScanner
from coderapi.backends.coder.tool_stream import CALL_FENCE_LANGS, FENCE, OPEN_TAG

_NAME_KEY = '"name"'
_MAX_FENCE_LINE = 32  # a ``` line longer than this is no call fence (no language name is that long)
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class Trigger:
    start: int  # offset in the free text where the call's markup begins
    wrapper: str  # "tag" | "fence" | "bare"
    header: str  # the markup from `start` up to the JSON ("<tool_call>", "```json\n", "")
    list_form: bool  # the JSON opens with "[": a list of calls


class TriggerScanner:
    def __init__(self) -> None:
        self.text = ""
        self.safe = 0  # text[:safe] holds no trigger and no start of one
        self._pos = 0  # where scanning resumes (a candidate start, or the end of the safe text)
        self._in_code = False  # inside a ``` block that is not a call fence
        self._code_line = False  # ... and still on its opening line (the language name)
        self._json: JsonScanner | None = None  # inside a JSON value that is no call (skipped whole)

    def feed(self, piece: str, *, final: bool = False) -> Trigger | None:
        """Adds `piece`; returns the trigger once one is complete. `final`: no more text comes, so a
        trigger still incomplete is none, and all the text becomes safe."""
        self.text += piece
        trigger = self._scan()
        if trigger is None and final:
            self.safe = len(self.text)
        return trigger

    def _scan(self) -> Trigger | None:
        text = self.text
        while True:
            if self._json is not None:
                used = self._json.feed(text[self._pos :])
                self._pos += used
                if not (self._json.done or self._json.broken):
                    self.safe = self._pos
                    return None
                self._json = None
                continue
            if self._code_line:
                line_end = text.find("\n", self._pos)
                self._pos = self.safe = len(text) if line_end < 0 else line_end + 1
                if line_end < 0:
                    return None
                self._code_line = False
            if self._in_code:
                end = text.find(FENCE, self._pos)
                if end < 0:  # a closing fence may be arriving: keep scanning from its first backtick
                    self._pos = self.safe = max(self._pos, len(text) - _partial_tail(text, FENCE))
                    return None
                self._pos, self._in_code = end + len(FENCE), False
                continue
            start = _next_candidate(text, self._pos)
            if start is None:  # no "<", "`", "{" or "[" ahead: all of it is plain text
                self._pos = self.safe = len(text)
                return None
            verdict, trigger, resume = _classify(text, start)
            if verdict == "maybe":
                self._pos = self.safe = start
                return None
            if verdict == "trigger":
                self._pos = self.safe = start
                return trigger
            self._pos = resume
            self._in_code = verdict in ("code", "code-line")
            self._code_line = verdict == "code-line"
            if verdict == "json":  # a JSON value that is no call: nothing inside it is one either
                self._json = JsonScanner()


def _next_candidate(text: str, pos: int) -> int | None:
    hits = [i for i in (text.find(m, pos) for m in ("<", "`", "{", "[")) if i >= 0]
    return min(hits) if hits else None


def _classify(text: str, start: int) -> tuple[str, Trigger | None, int]:
    """("trigger", trigger, _) | ("maybe", None, _) | ("no", "code" or "json", None, where to resume)."""
    rest = text[start:]
    if rest[0] == "<":
        if rest.startswith(OPEN_TAG):
            return "trigger", Trigger(start, "tag", OPEN_TAG, False), 0
        return ("maybe" if OPEN_TAG.startswith(rest) else "no"), None, start + 1
    if rest[0] == "`":
        return _classify_fence(text, start)
    verdict, list_form = _json_opening(rest)
    if verdict == "trigger":
        return "trigger", Trigger(start, "bare", "", list_form), 0
    return ("json" if verdict == "no" else verdict), None, start


def _classify_fence(text: str, start: int) -> tuple[str, Trigger | None, int]:
    rest = text[start:]
    if not rest.startswith(FENCE):
        return ("maybe" if FENCE.startswith(rest) else "no"), None, start + len(rest) - len(rest.lstrip("`"))
    line_end = rest.find("\n")
    language = rest[len(FENCE) : line_end if line_end >= 0 else len(rest)].strip().lower()
    could_call = any(lang.startswith(language) for lang in CALL_FENCE_LANGS)
    if line_end < 0:
        if could_call and len(rest) <= _MAX_FENCE_LINE:
            return "maybe", None, start
        return "code-line", None, start + len(FENCE)  # a code block: its body begins after this line
    if language not in CALL_FENCE_LANGS or line_end > _MAX_FENCE_LINE:
        return "code", None, start + line_end + 1
    body = rest[line_end + 1 :]
    json_at = line_end + 1 + len(body) - len(body.lstrip(_WHITESPACE))
    verdict, list_form = _json_opening(rest[json_at:])
    if verdict == "trigger":
        return "trigger", Trigger(start, "fence", rest[:json_at], list_form), 0
    if verdict == "maybe":
        return "maybe", None, start
    return "code", None, start + line_end + 1  # a fenced block that is not a call: ordinary code


def _json_opening(rest: str) -> tuple[str, bool]:
    """Whether `rest` opens a call object (`{"name"`) or a list of them (`[{"name"`): the verdict
    ("trigger", "maybe" or "no") and whether it is a list."""
    if not rest:
        return "maybe", False
    list_form = rest[0] == "["
    if list_form:
        rest = rest[1:].lstrip(_WHITESPACE)
        if not rest:
            return "maybe", True
    if rest[0] != "{":
        return "no", list_form
    key = rest[1:].lstrip(_WHITESPACE)
    if key.startswith(_NAME_KEY):
        return "trigger", list_form
    return ("maybe" if _NAME_KEY.startswith(key) else "no"), list_form


def _partial_tail(text: str, marker: str) -> int:
    """Length of the longest tail of `text` that begins `marker` (but is not all of it)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
