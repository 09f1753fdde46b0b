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
from enum import Enum
from typing import NamedTuple, Union

from coderapi.backends.coder.json_scan import JsonScanner
from coderapi.backends.coder.call_shapes import ParsedCall, calls_in

OPEN_TAG, CLOSE_TAG, FENCE = "<tool_call>", "</tool_call>", "```"
CALL_FENCE_LANGS = {"", "json", "json5", "jsonc", "tool_call", "tool_code", "tool"}
CALL_KEYS = {"name", "arguments", "parameters", "function", "type", "id"}


class Context(Enum):
    """Where the stream is, outside a JSON candidate."""

    TEXT = "text"
    TAG = "tag"  # inside <tool_call> ... </tool_call>
    FENCE = "fence"  # inside a ``` block that holds calls
    CODE = "code"  # inside any other ``` block: content up to its closing fence


class Marker(Enum):
    OPEN_TAG = OPEN_TAG
    CLOSE_TAG = CLOSE_TAG
    FENCE = FENCE
    JSON = "{"  # or "[": a JSON candidate begins


class Action(Enum):
    MARKUP = "markup"  # the marker is markup: dropped, never content
    CANDIDATE = "candidate"  # a JSON value starts: held until known to be a call or not
    OPEN_FENCE = "open fence"  # a ``` in text: a call fence or a code block, by its language and body
    SKIP_FENCE_LINE = "skip fence line"  # a ``` inside tags: markup, its language name too
    CONTENT = "content"  # the closing fence of a code block: content like the rest of the block


class Transition(NamedTuple):
    action: Action
    to: Context | None  # None: the action decides (OPEN_FENCE)
    closes: bool = False  # whitespace held before it goes with the markup


_TRANSITIONS: dict[tuple[Context, Marker], Transition] = {
    (Context.TEXT, Marker.OPEN_TAG): Transition(Action.MARKUP, Context.TAG),
    (Context.TEXT, Marker.CLOSE_TAG): Transition(Action.MARKUP, Context.TEXT, closes=True),
    (Context.TEXT, Marker.FENCE): Transition(Action.OPEN_FENCE, None),
    (Context.TEXT, Marker.JSON): Transition(Action.CANDIDATE, Context.TEXT),
    (Context.TAG, Marker.OPEN_TAG): Transition(Action.MARKUP, Context.TAG),
    (Context.TAG, Marker.CLOSE_TAG): Transition(Action.MARKUP, Context.TEXT, closes=True),
    (Context.TAG, Marker.FENCE): Transition(Action.SKIP_FENCE_LINE, Context.TAG),
    (Context.TAG, Marker.JSON): Transition(Action.CANDIDATE, Context.TAG),
    (Context.FENCE, Marker.OPEN_TAG): Transition(Action.MARKUP, Context.FENCE),
    (Context.FENCE, Marker.CLOSE_TAG): Transition(Action.MARKUP, Context.FENCE),
    (Context.FENCE, Marker.FENCE): Transition(Action.MARKUP, Context.TEXT, closes=True),
    (Context.FENCE, Marker.JSON): Transition(Action.CANDIDATE, Context.FENCE),
    (Context.CODE, Marker.FENCE): Transition(Action.CONTENT, Context.TEXT),
}
_MARKUP_TEXTS = (OPEN_TAG, CLOSE_TAG, FENCE)
_MARKUP = (Marker.OPEN_TAG, Marker.CLOSE_TAG, Marker.FENCE)


class Mode(Enum):
    """What a JSON candidate is, so far."""

    HOLD = "hold"  # not yet known: held back
    CALL = "call"  # announced: its arguments stream
    CONTENT = "content"  # not a call: released as content


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


class _ContentOut:
    """Content events, with the whitespace at their end held until more content follows: content
    never starts or ends with the whitespace around a call. `cut` is the one place it is dropped."""

    def __init__(self, events: list[ToolEvent]) -> None:
        self._events = events
        self._held = ""

    def write(self, text: str) -> None:
        if not text:
            return
        text = self._held + text
        body = text.rstrip()
        self._held = text[len(body) :]
        if body:
            self._events.append(ContentText(body))

    def cut(self) -> None:
        """A call or a closing markup: the whitespace before it goes with it."""
        self._held = ""

    def end(self, keep_whitespace: bool) -> None:
        if keep_whitespace and self._held:
            self._events.append(ContentText(self._held))
        self.cut()


@dataclass
class _Candidate:
    wrapper: Context  # the context it appeared in: TEXT, TAG or FENCE
    head: str = ""  # markup held before it (a fence's opening line), released with it
    scanner: JsonScanner = field(default_factory=JsonScanner)
    raw: str = ""
    mode: Mode = Mode.HOLD
    call: int = -1
    emitted: int = 0  # offset in scanner.text of the arguments already sent


class ToolCallStream:
    def __init__(self, tool_names: set[str], max_calls: int | None = None) -> None:
        self._names = tool_names
        self._max = max_calls
        self.calls: list[ParsedCall] = []
        self.truncated = False  # the output ended inside the arguments of an announced call
        self._pending = ""
        self._context = Context.TEXT
        self._fence_calls = 0
        self._json: _Candidate | None = None
        self._events: list[ToolEvent] = []
        self._out = _ContentOut(self._events)

    def feed(self, text: str) -> list[ToolEvent]:
        self._pending += text
        self._run(final=False)
        return self._drain()

    def finish(self) -> list[ToolEvent]:
        self._run(final=True)
        if self._json is not None:
            self._end_json()
            self._run(final=True)
        self._out.end(keep_whitespace=not self.calls)
        return self._drain()

    def _drain(self) -> list[ToolEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    # -- the loop ---------------------------------------------------------------------------

    def _run(self, final: bool) -> None:
        while self._pending:
            if self._json is not None:
                self._feed_json()
            elif self._context is Context.CODE:
                if not self._code(final):
                    return
            elif not self._scan(final):
                return

    def _code(self, final: bool) -> bool:
        """Inside a non-call ``` block: everything is content up to the closing fence."""
        at = self._pending.find(FENCE)
        if at < 0:
            keep = 0 if final else len(self._pending) - len(self._pending.rstrip("`"))
            self._out.write(self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
            return False
        self._out.write(self._pending[: at + len(FENCE)])
        self._pending = self._pending[at + len(FENCE) :]
        self._context = _TRANSITIONS[Context.CODE, Marker.FENCE].to
        return True

    def _scan(self, final: bool) -> bool:
        """Text, tag or call-fence context: release text up to the next marker, then take its transition."""
        text = self._pending
        hits = [(i, m) for i, m in ((text.find(m.value), m) for m in _MARKUP) if i >= 0]
        hits += [(i, Marker.JSON) for i in (text.find("{"), text.find("[")) if i >= 0]
        if not hits:
            held = _partial_marker(text, _MARKUP_TEXTS)
            if final and held == 1:
                held = 0  # a lone "<" or "`" at the very end is text; a longer piece of markup is dropped
            self._out.write(text[: len(text) - held])
            self._pending = "" if final else text[len(text) - held :]
            return False
        at, marker = min(hits, key=lambda hit: hit[0])
        self._out.write(text[:at])
        self._pending = text[at:]
        transition = _TRANSITIONS[self._context, marker]
        if transition.action is Action.CANDIDATE:
            self._json = _Candidate(self._context)
        elif transition.action is Action.OPEN_FENCE:
            return self._open_fence(final)
        elif transition.action is Action.SKIP_FENCE_LINE:
            return self._skip_fence_line(final)
        else:
            self._pending = self._pending[len(marker.value) :]
            if transition.closes:
                self._out.cut()
            self._context = transition.to
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
            self._json = _Candidate(Context.FENCE, head=self._pending[: len(self._pending) - len(body)])
            self._pending = body
            self._context, self._fence_calls = Context.FENCE, len(self.calls)
            return True
        if not final and (language is None or (language in CALL_FENCE_LANGS and not body)):
            return False  # wait for the language line and the first character of the body
        cut = line_end + 1 if line_end >= 0 else len(self._pending)
        self._out.write(self._pending[:cut])
        self._pending = self._pending[cut:]
        self._context = Context.CODE
        return True

    # -- a JSON candidate -------------------------------------------------------------------

    def _feed_json(self) -> None:
        candidate = self._json
        used = candidate.scanner.feed(self._pending)
        piece, self._pending = self._pending[:used], self._pending[used:]
        candidate.raw += piece
        if candidate.mode is Mode.CONTENT:
            self._out.write(piece)
        elif candidate.mode is Mode.HOLD:
            self._decide(candidate)
        if candidate.mode is Mode.CALL:
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
                candidate.mode, candidate.emitted = Mode.CALL, arguments.start
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
        if candidate.mode is Mode.CALL:  # cut off inside its arguments (a missing final brace is forgiven)
            self.truncated = scanner.members[1].end is None
        elif candidate.mode is Mode.HOLD:
            calls = calls_in(scanner.value(), self._names) if scanner.done and _valid(scanner) else None
            if calls is None:
                self._release(candidate)
            for call in (calls or [])[: None if self._max is None else max(0, self._max - len(self.calls))]:
                self._announce(call)
                self._events.append(CallArguments(len(self.calls) - 1, call.arguments))
        fence_without_call = candidate.wrapper is Context.FENCE and len(self.calls) == self._fence_calls
        if fence_without_call and self._context is Context.FENCE:
            self._context = Context.CODE  # the fence held no call: it is an ordinary code block

    def _release(self, candidate: _Candidate) -> None:
        """Not a call: what was held is content (a fence's opening line too, unless calls came first)."""
        candidate.mode = Mode.CONTENT
        self._out.write(candidate.head + candidate.raw)

    def _announce(self, call: ParsedCall) -> int:
        self._out.cut()
        self.calls.append(call)
        self._events.append(CallStart(len(self.calls) - 1, call.id, call.name))
        return len(self.calls) - 1


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
