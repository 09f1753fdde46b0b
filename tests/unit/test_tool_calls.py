"""The tool-call parser: the forms Qwen2.5-Coder writes, whole and streamed, never leaking markup."""

from __future__ import annotations

import json

import pytest

from coderapi.backends.coder.json_scan import JsonScanner
from coderapi.backends.coder.tool_calls import parse_tool_calls
from coderapi.backends.coder.tool_stream import CallArguments, CallStart, ContentText, ToolCallStream

NAMES = {"get_weather", "read_file", "git_status"}
PARIS = '{"name": "get_weather", "arguments": {"location": "Paris"}}'


def calls(text: str, names: set[str] = NAMES, max_calls: int | None = None) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for c in parse_tool_calls(text, names, max_calls).calls]


def streamed(text: str, pieces: int = 1, names: set[str] = NAMES, max_calls: int | None = None):
    """Feed `text` in pieces of `pieces` characters: (content, [(name, arguments text)], events)."""
    stream = ToolCallStream(names, max_calls)
    events = []
    for start in range(0, len(text), pieces):
        events += stream.feed(text[start : start + pieces])
    events += stream.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentText))
    found: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, CallStart):
            found[event.index] = [event.name, ""]
        elif isinstance(event, CallArguments):
            found[event.index][1] += event.fragment
    return content, [tuple(found[i]) for i in sorted(found)], events


@pytest.mark.parametrize(
    "text",
    [
        f"<tool_call>\n{PARIS}\n</tool_call>",
        f"```json\n{PARIS}\n```",
        f"```\n{PARIS}\n```",
        PARIS,
        '{\n  "name": "get_weather",\n  "arguments": {\n    "location": "Paris"\n  }\n}',
        '{"name": "get_weather", "arguments": "{\\"location\\": \\"Paris\\"}"}',
        '{"name": "get_weather", "parameters": {"location": "Paris"}}',
        '{"type": "function", "function": {"name": "get_weather", "arguments": {"location": "Paris"}}}',
        f"[{PARIS}]",
        f"<tool_call>\n```json\n{PARIS}\n```\n</tool_call>",
    ],
)
def test_every_form_gives_the_call_and_no_content(text):
    parsed = parse_tool_calls(text, NAMES)
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [("get_weather", {"location": "Paris"})]
    assert parsed.content is None and parsed.calls[0].id.startswith("call_")


def test_several_calls_in_each_form():
    oslo = PARIS.replace("Paris", "Oslo")
    expected = [("get_weather", {"location": "Paris"}), ("get_weather", {"location": "Oslo"})]
    assert calls(f"<tool_call>\n{PARIS}\n</tool_call>\n<tool_call>\n{oslo}\n</tool_call>") == expected
    assert calls(f"```json\n{PARIS}\n```\n\n```json\n{oslo}\n```") == expected
    assert calls(f"```json\n{PARIS}\n{oslo}\n```") == expected
    assert calls(f"{PARIS}\n{oslo}") == expected
    assert calls(f"[{PARIS}, {oslo}]") == expected


def test_text_around_calls_is_content_without_markup():
    parsed = parse_tool_calls(f"Let me check.\n\n<tool_call>\n{PARIS}\n</tool_call>\n\nDone.", NAMES)
    assert parsed.content == "Let me check.\n\nDone."
    parsed = parse_tool_calls(f"I'll look it up:\n```json\n{PARIS}\n```", NAMES)
    assert parsed.content == "I'll look it up:"


@pytest.mark.parametrize(
    "text",
    [
        "Plain answer with {braces}, [brackets] and `code`.",
        'Here:\n```python\nconfig = {"name": "get_weather", "arguments": {}}\nprint(config)\n```\nThat is all.',
        '```json\n{"name": "Alice", "age": 3}\n```',
        '{"location": "Paris"}',
        '{"name": "delete_everything", "arguments": {}}',  # not an offered tool
        "The answer is [1, 2, 3].",
    ],
)
def test_anything_else_is_content_unchanged(text):
    parsed = parse_tool_calls(text, NAMES)
    assert parsed.calls == [] and parsed.content == text
    assert streamed(text)[0] == text


def test_nothing_is_parsed_without_tools():
    assert parse_tool_calls(f"<tool_call>\n{PARIS}\n</tool_call>", set()).calls == []


def test_parallel_tool_calls_false_keeps_the_first_call_only():
    text = f"{PARIS}\n{PARIS.replace('Paris', 'Oslo')}"
    assert calls(text, max_calls=1) == [("get_weather", {"location": "Paris"})]
    assert streamed(text, max_calls=1)[1] == [("get_weather", '{"location": "Paris"}')]


def test_a_call_cut_off_by_max_tokens_is_reported_truncated():
    parsed = parse_tool_calls('<tool_call>\n{"name": "get_weather", "arguments": {"location": "Pa', NAMES)
    assert parsed.truncated and parsed.calls[0].name == "get_weather"


def test_partial_markup_at_the_end_is_dropped():
    assert parse_tool_calls("Checking <tool_c", NAMES).content == "Checking "


@pytest.mark.parametrize("pieces", [1, 2, 3, 7, 1000])
def test_streaming_in_any_pieces_agrees_with_the_whole_parse(pieces):
    text = f"Sure.\n<tool_call>\n{PARIS}\n</tool_call>\n```json\n[{PARIS}]\n```\nok {{x}} `y`"
    whole = parse_tool_calls(text, NAMES)
    content, found, events = streamed(text, pieces)
    assert content == whole.content == "Sure.\nok {x} `y`"
    assert found == [(c.name, c.arguments) for c in whole.calls]
    assert not any(m in content for m in ("<tool_call>", "</tool_call>", "```"))


def test_content_streams_before_the_call_and_the_name_before_the_arguments_end():
    stream = ToolCallStream(NAMES)
    assert stream.feed("Let me check the weather") == [ContentText("Let me check the weather")]
    assert stream.feed('.\n<tool_call>\n{"name": "get_weather", "arguments": ') == [ContentText(".")]
    events = stream.feed('{"location": "Par')
    assert isinstance(events[0], CallStart) and events[0].name == "get_weather" and events[0].index == 0
    assert events[1:] == [CallArguments(0, '{"location": "Par')]
    assert stream.feed('is"}}\n</tool_call>') == [CallArguments(0, 'is"}')]
    assert stream.finish() == []


def test_arguments_are_normalised_alike_streamed_or_whole():
    text = '```json\n{\n  "name": "read_file",\n  "arguments": {\n    "path":"a.py" , "n":[1,2]\n  }\n}\n```'
    assert parse_tool_calls(text, NAMES).calls[0].arguments == '{"path": "a.py", "n": [1, 2]}'
    assert streamed(text)[1] == [("read_file", '{"path": "a.py", "n": [1, 2]}')]


def test_json_scanner_tracks_members_and_rejects_garbage():
    scanner = JsonScanner()
    assert scanner.feed('{"name": "f", "arguments": {"a": [1, {"b": null}]}} trailing') == 51
    assert scanner.done and [m.key for m in scanner.members] == ["name", "arguments"]
    assert scanner.members[0].string == "f"
    assert scanner.text[scanner.members[1].start : scanner.members[1].end] == '{"a": [1, {"b": null}]}'
    for bad in ("{x}", '{"a" 1}', '{"a": 1,}', "[1,]", '{"a": 1]'):
        broken = JsonScanner()
        broken.feed(bad)
        assert broken.broken and not broken.done, bad
