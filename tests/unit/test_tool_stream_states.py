"""tool_stream's state machine: its transition table, each transition, and split invariance
(any split of an answer into streamed pieces gives the calls and content of the whole parse)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.backends.coder.tool_calls import parse_tool_calls
from coderapi.backends.coder.tool_stream import (
    _TRANSITIONS, Action, CallArguments, CallStart, ContentText, Context, Marker, ToolCallStream,
)

NAMES = {"get_weather", "read_file"}
PARIS = '{"name": "get_weather", "arguments": {"location": "Paris"}}'


def streamed(pieces: list[str], names: set[str] = NAMES, max_calls: int | None = None):
    """(content, [(name, arguments)], truncated) of `pieces` fed one by one."""
    stream = ToolCallStream(names, max_calls)
    events = [e for piece in pieces for e in stream.feed(piece)] + stream.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentText))
    calls: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, CallStart):
            calls[event.index] = [event.name, ""]
        elif isinstance(event, CallArguments):
            calls[event.index][1] += event.fragment
    return content, [tuple(calls[i]) for i in sorted(calls)], stream.truncated


def whole(text: str, names: set[str] = NAMES, max_calls: int | None = None):
    parsed = parse_tool_calls(text, names, max_calls)
    return parsed.content or "", [(c.name, c.arguments) for c in parsed.calls], parsed.truncated


def test_every_context_outside_code_has_a_transition_for_every_marker():
    for context in (Context.TEXT, Context.TAG, Context.FENCE):
        assert {m for c, m in _TRANSITIONS if c is context} == set(Marker)
    assert {m for c, m in _TRANSITIONS if c is Context.CODE} == {Marker.FENCE}
    assert all(t.action is Action.CANDIDATE for (c, m), t in _TRANSITIONS.items() if m is Marker.JSON)


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        # TEXT --<tool_call>--> TAG --</tool_call>--> TEXT: tags are markup, whitespace before a closing one goes too
        (f"Sure.\n<tool_call>\n{PARIS}\n</tool_call>\nDone.", "Sure.\nDone.", ["get_weather"]),
        # TEXT --```json--> FENCE --```--> TEXT
        (f"Here:\n```json\n{PARIS}\n```\nok", "Here:\nok", ["get_weather"]),
        # TAG --```--> TAG: a fence inside tags is markup, its language name too
        (f"<tool_call>\n```json\n{PARIS}\n```\n</tool_call>", "", ["get_weather"]),
        # FENCE whose JSON is no call --> CODE: an ordinary code block, released whole
        ('```json\n{"a": 1}\n```\nafter {x}', '```json\n{"a": 1}\n```\nafter {x}', []),
        # TEXT --```python--> CODE: a call-shaped object in code is content
        (f"```python\nx = {PARIS}\n```", f"```python\nx = {PARIS}\n```", []),
        # a stray closing tag in text is markup, dropped
        ("a </tool_call> b", "a b", []),
        # a JSON candidate that is not a call is released unchanged
        ('Use {"k": [1, 2]} here.', 'Use {"k": [1, 2]} here.', []),
    ],
    ids=["tag", "call-fence", "fence-in-tag", "fence-without-call", "code", "stray-close", "not-a-call"],
)
def test_transitions(text, content, calls):
    got_content, got_calls, _ = streamed([text])
    assert got_content == content and [name for name, _ in got_calls] == calls


def test_whitespace_around_a_call_never_reaches_the_content():
    content, calls, _ = streamed(["  Checking. \n", "\n", PARIS, "\n  "])
    assert content == "  Checking." and len(calls) == 1
    content, calls, _ = streamed(["text  \n  "])
    assert content == "text  \n  " and calls == []  # without a call, trailing whitespace is kept


def test_arguments_cut_off_mark_the_stream_truncated():
    _, calls, truncated = streamed([PARIS[:-6]])
    assert calls == [("get_weather", '{"location": "Pa')] and truncated


_PIECES = [
    "<tool_call>", "</tool_call>", "```", "```json\n", "```python\n", "\n", " ", "hi", "<", "`",
    PARIS, '{"name": "read_file", "arguments": {"path": "a.py"}}', '[{"name": "get_weather", "arguments": {}}]',
    '{"name": "launch", "arguments": {}}', "{", "}", "[", "]", '"', '"name"', ": ", ",", '{"a": 1}',
]


@st.composite
def answers_and_splits(draw):
    text = "".join(draw(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=len(text)))))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=400, deadline=None)
@given(answers_and_splits(), st.sampled_from([None, 1]))
def test_any_split_gives_the_whole_parse(case, max_calls):
    text, pieces = case
    assert streamed(pieces, max_calls=max_calls) == whole(text, max_calls=max_calls)
