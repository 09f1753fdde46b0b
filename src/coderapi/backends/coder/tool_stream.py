"""Tool calls found while the text streams: content goes out live, possible calls are held back.

Qwen2.5-Coder writes calls three ways: `<tool_call>{...}</tool_call>`, a ```json fenced block, or a
bare JSON object (or list) holding `name` and `arguments`. Plain text is released as it comes;
from a `<tool_call>` tag, a ``` fence or a `{` / `[` on, the text is held until it is known not to
be a call (then released unchanged) or known to be one. A call in the usual shape
(`{"name": <offered tool>, "arguments": {...}}`) is announced as soon as its name and the start
of its arguments are seen, and its arguments then stream in fragments; other shapes are
announced when their JSON is complete. Tags and the fences around calls never reach the content.

Whitespace is held until more content follows, so content never starts or ends with the
whitespace that surrounded a call. The same machine parses whole outputs (tool_calls.py), so
streaming and non-streaming answers agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from coderapi.backends.coder.json_scan import JsonScanner
from coderapi.backends.coder.call_shapes import ParsedCall, calls_in

OPEN_TAG, CLOSE_TAG, FENCE = "<tool_call>", "</tool_call>", "```"
CALL_FENCE_LANGS = {"", "json", "json5", "jsonc", "tool_call", "tool_code", "tool"}
CALL_KEYS = {"name", "arguments", "parameters", "function", "type", "id"}
_MARKERS = {context: (OPEN_TAG, CLOSE_TAG, FENCE) for context in ("text", "tag", "fence")}
# What a marker does outside a JSON candidate: (context, marker) -> the next context. In text, a
# fence is opened by _open_fence; every other marker is markup and never becomes content.
_AFTER = {
    ("text", OPEN_TAG): "tag", ("text", CLOSE_TAG): "text",
    ("tag", OPEN_TAG): "tag", ("tag", CLOSE_TAG): "text", ("tag", FENCE): "tag",
    ("fence", OPEN_TAG): "fence", ("fence", CLOSE_TAG): "fence", ("fence", FENCE): "text",
}


@dataclass
class ContentText:
    text: str


@dataclass
class CallStart:
    index: int
    id: str
    name: str


@dataclass
class CallArguments:
    index: int
    fragment: str


ToolEvent = Union[ContentText, CallStart, CallArguments]


@dataclass
class _Candidate:
    wrapper: str  # the context it appeared in: text, tag or fence
    head: str = ""  # markup held before it (a fence's opening line), released with it
    scanner: JsonScanner = field(default_factory=JsonScanner)
    raw: str = ""
    mode: str = "hold"  # hold | call (announced, arguments streaming) | content (released)
    call: int = -1
    emitted: int = 0  # offset in scanner.text of the arguments already sent


class ToolCallStream:
    def __init__(self, tool_names: set[str], max_calls: int | None = None) -> None:
        self._names = tool_names
        self._max = max_calls
        self.calls: list[ParsedCall] = []
        self.truncated = False  # the output ended inside the arguments of an announced call
        self._pending = ""
        self._context = "text"  # text | tag | fence (a ``` block around calls) | code (any other block)
        self._fence_calls = 0
        self._json: _Candidate | None = None
        self._ws = ""
        self._events: list[ToolEvent] = []

    def feed(self, text: str) -> list[ToolEvent]:
        self._pending += text
        self._run(final=False)
        return self._drain()

    def finish(self) -> list[ToolEvent]:
        self._run(final=True)
        if self._json is not None:
            self._end_json()
            self._run(final=True)
        if not self.calls and self._ws:
            self._events.append(ContentText(self._ws))
        self._ws = ""
        return self._drain()

    def _drain(self) -> list[ToolEvent]:
        events, self._events = self._events, []
        return events

    # -- the loop ---------------------------------------------------------------------------

    def _run(self, final: bool) -> None:
        while self._pending:
            if self._json is not None:
                self._feed_json()
            elif self._context == "code":
                if not self._code(final):
                    return
            elif not self._scan(final):
                return

    def _code(self, final: bool) -> bool:
        """Inside a non-call ``` block: everything is content up to the closing fence."""
        at = self._pending.find(FENCE)
        if at < 0:
            keep = 0 if final else len(self._pending) - len(self._pending.rstrip("`"))
            self._content(self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
            return False
        self._content(self._pending[: at + len(FENCE)])
        self._pending = self._pending[at + len(FENCE) :]
        self._context = "text"
        return True

    def _scan(self, final: bool) -> bool:
        """Text, tag or call-fence context: release text up to the next marker and handle it."""
        text, markers = self._pending, _MARKERS[self._context]
        hits = [(i, m) for i, m in ((text.find(m), m) for m in markers) if i >= 0]
        hits += [(i, "json") for i in (text.find("{"), text.find("[")) if i >= 0]
        if not hits:
            held = _partial_marker(text, markers)
            if final and held == 1:
                held = 0  # a lone "<" or "`" at the very end is text; a longer piece of markup is dropped
            self._content(text[: len(text) - held])
            self._pending = "" if final else text[len(text) - held :]
            return False
        at, marker = min(hits)
        self._content(text[:at])
        self._pending = text[at:]
        if marker == "json":
            self._json = _Candidate(self._context)
        elif marker == FENCE and self._context == "text":
            return self._open_fence(final)
        elif marker == FENCE and self._context == "tag":
            return self._skip_fence_line(final)
        else:
            self._pending = self._pending[len(marker) :]
            if _AFTER[self._context, marker] == "text":
                self._ws = ""  # whitespace before a closing tag or fence goes with the markup
            self._context = _AFTER[self._context, marker]
        return True

    def _skip_fence_line(self, final: bool) -> bool:
        """A fence inside <tool_call> tags is markup too, language name included."""
        line_end = self._pending.find("\n")
        if line_end < 0 and not final:
            return False
        line = self._pending[len(FENCE) : line_end if line_end >= 0 else len(self._pending)]
        cut = len(FENCE) + (len(line) + 1 if line.strip().isidentifier() or not line.strip() else 0)
        self._pending = self._pending[cut:]
        return True

    def _open_fence(self, final: bool) -> bool:
        line_end = self._pending.find("\n")
        language = self._pending[len(FENCE) : line_end].strip().lower() if line_end >= 0 else None
        body = self._pending[line_end + 1 :].lstrip() if line_end >= 0 else ""
        if language in CALL_FENCE_LANGS and body[:1] in ("{", "["):
            self._json = _Candidate("fence", head=self._pending[: len(self._pending) - len(body)])
            self._pending = body
            self._context, self._fence_calls = "fence", len(self.calls)
            return True
        if not final and (language is None or (language in CALL_FENCE_LANGS and not body)):
            return False  # wait for the language line and the first character of the body
        cut = line_end + 1 if line_end >= 0 else len(self._pending)
        self._content(self._pending[:cut])
        self._pending = self._pending[cut:]
        self._context = "code"
        return True

    # -- a JSON candidate -------------------------------------------------------------------

    def _feed_json(self) -> None:
        candidate = self._json
        used = candidate.scanner.feed(self._pending)
        piece, self._pending = self._pending[:used], self._pending[used:]
        candidate.raw += piece
        if candidate.mode == "content":
            self._content(piece)
        elif candidate.mode == "hold":
            self._decide(candidate)
        if candidate.mode == "call":
            self._stream_arguments(candidate)
        if candidate.scanner.done or candidate.scanner.broken:
            self._end_json()

    def _decide(self, candidate: _Candidate) -> None:
        scanner = candidate.scanner
        text, members = scanner.text, scanner.members
        if scanner.broken or _not_a_call(text, members, self._names):
            self._release(candidate)
            return
        if len(members) < 2 or (self._max is not None and len(self.calls) >= self._max):
            return
        name, arguments = members[0], members[1]
        if name.key == "name" and name.string in self._names and arguments.key in ("arguments", "parameters"):
            if text[arguments.start : arguments.start + 1] == "{":
                candidate.mode, candidate.emitted = "call", arguments.start
                candidate.call = self._announce(ParsedCall(name=name.string, arguments=""))

    def _stream_arguments(self, candidate: _Candidate) -> None:
        arguments = candidate.scanner.members[1]
        end = arguments.end if arguments.end is not None else len(candidate.scanner.text)
        fragment = candidate.scanner.text[candidate.emitted : end]
        if fragment:
            candidate.emitted = end
            self.calls[candidate.call].arguments += fragment
            self._events.append(CallArguments(candidate.call, fragment))

    def _end_json(self) -> None:
        candidate, self._json = self._json, None
        scanner = candidate.scanner
        if candidate.mode == "call":  # cut off inside its arguments (a missing final brace is forgiven)
            self.truncated = scanner.members[1].end is None
        elif candidate.mode == "hold":
            calls = calls_in(scanner.value(), self._names) if scanner.done and _valid(scanner) else None
            if calls is None:
                self._release(candidate)
            for call in (calls or [])[: None if self._max is None else max(0, self._max - len(self.calls))]:
                self._announce(call)
                self._events.append(CallArguments(len(self.calls) - 1, call.arguments))
        if candidate.wrapper == "fence" and self._context == "fence" and len(self.calls) == self._fence_calls:
            self._context = "code"  # the fence held no call: it is an ordinary code block

    def _release(self, candidate: _Candidate) -> None:
        """Not a call: what was held is content (a fence's opening line too, unless calls came first)."""
        candidate.mode = "content"
        self._content(candidate.head + candidate.raw)

    def _announce(self, call: ParsedCall) -> int:
        self._ws = ""
        self.calls.append(call)
        self._events.append(CallStart(len(self.calls) - 1, call.id, call.name))
        return len(self.calls) - 1

    def _content(self, text: str) -> None:
        if not text:
            return
        text = self._ws + text
        body = text.rstrip()
        self._ws = text[len(body) :]
        if body:
            self._events.append(ContentText(body))


def _not_a_call(text: str, members: list, names: set[str]) -> bool:
    if text.startswith("["):
        return len(text) > 1 and text[1] != "{"
    if members and members[0].key not in CALL_KEYS:
        return True
    name = next((m for m in members if m.key == "name"), None)
    return name is not None and name.end is not None and name.string not in names


def _valid(scanner: JsonScanner) -> bool:
    try:
        scanner.value()
    except ValueError:
        return False
    return True


def _partial_marker(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest tail of `text` that begins one of `markers`."""
    for size in range(min(len(text), max(len(m) for m in markers) - 1), 0, -1):
        if any(m.startswith(text[-size:]) for m in markers):
            return size
    return 0
