"""Where a tool call starts in free text (the lazy grammar's triggers), fed in any pieces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.backends.coder.call_triggers import Trigger, TriggerScanner
from coderapi.backends.coder.lazy_grammar import COMPACT_SPACE, LazyToolGrammar, gbnf_literal


def scan(pieces: list[str]) -> tuple[Trigger | None, TriggerScanner, list[int]]:
    """Feeds the pieces; returns the trigger, the scanner and `safe` after each piece."""
    scanner, safes = TriggerScanner(), []
    for i, piece in enumerate(pieces):
        trigger = scanner.feed(piece, final=i == len(pieces) - 1)
        safes.append(scanner.safe)
        if trigger is not None:
            return trigger, scanner, safes
    return None, scanner, safes


def chars(text: str) -> list[str]:
    return list(text)


CALL = '{"name": "get_weather", "arguments": {"location": "Paris"}}'
TRIGGERED = [
    ("Sure! " + CALL, Trigger(6, "bare", "", False)),
    ("I will check.\n<tool_call>\n" + CALL + "\n</tool_call>", Trigger(14, "tag", "<tool_call>", False)),
    ("Here:\n```json\n{\n  \"name\": \"x\"}\n```", Trigger(6, "fence", "```json\n", False)),
    ("```\n  " + CALL + "\n```", Trigger(0, "fence", "```\n  ", False)),
    ('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]', Trigger(0, "bare", "", True)),
    ('```json\n[\n {"name": "a"}]\n```', Trigger(0, "fence", "```json\n", True)),
    ("```python\nx = {\"name\": 1}\n```\nthen " + CALL, Trigger(35, "bare", "", False)),
]
NOT_TRIGGERED = [
    "Hello! How can I assist you today?",
    "Use a < b and `code` and [1, 2] and {} freely.",
    "```python\nprint({\"name\": 1})\n```",
    '{"user": {"name": "Bob"}}',  # a JSON example whose *inner* object has a name: no call
    '```json\n{"city": "Paris"}\n```',
    "`` not a fence ``",
]


@pytest.mark.parametrize("text,expected", TRIGGERED)
def test_each_opening_is_a_trigger_whole_or_char_by_char(text, expected):
    assert scan([text])[0] == expected
    trigger, _, safes = scan(chars(text))
    assert trigger == expected
    assert max(safes) <= expected.start  # nothing from the call's markup on was ever safe to send


@pytest.mark.parametrize("text", NOT_TRIGGERED)
def test_text_without_a_call_start_is_all_released(text):
    trigger, scanner, safes = scan(chars(text))
    assert trigger is None and safes[-1] == len(text)


def test_what_may_begin_a_call_is_held_until_decided():
    scanner = TriggerScanner()
    assert scanner.feed("The answer is ") is None and scanner.safe == 14
    assert scanner.feed("{") is None and scanner.safe == 14  # may be {"name"
    assert scanner.feed(' "na') is None and scanner.safe == 14
    assert scanner.feed('mes": 1}') is None and scanner.safe == 27  # "names": no call, released
    assert scanner.feed(" <tool_") is None and scanner.safe == 28  # may be <tool_call>
    assert scanner.feed("x> done") is None and scanner.safe == 41


def test_a_partial_trigger_at_the_end_is_text():
    _, scanner, safes = scan(['Then {"na'])
    assert safes[-1] == len('Then {"na')


PIECES = st.sampled_from([
    "word ", "\n", "{", "}", "[", "]", '"name"', '"names"', ": ", "<", "<tool_call>", "```", "```json\n",
    "```python\n", "`", "é", "x", '"', "\\", " ",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=30), st.data())
def test_any_split_finds_the_same_trigger_and_never_releases_past_it(parts, data):
    text = "".join(parts)
    whole, _, _ = scan([text])
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if a < b] or [text]
    split, _, safes = scan(pieces)
    assert split == whole
    assert safes == sorted(safes)  # what was released stays released
    if whole is not None:
        assert max(safes) <= whole.start
    else:
        assert safes[-1] == len(text)


# -- the constrained phase's grammar ------------------------------------------------------------

RULES = f'call ::= "{{" space "\\"name\\"" space ":" space "\\"f\\"" "}}" space\n{COMPACT_SPACE}'


def test_grammar_repeats_the_models_opening_then_the_call_and_closes_the_wrapper():
    grammar = LazyToolGrammar(RULES, parallel=True)
    fence = grammar.for_trigger(Trigger(3, "fence", "```json\n", False), residual=" ")
    assert fence.endswith('root ::= " " "```json\\x0a" call "\\n```"\n')
    tag = grammar.for_trigger(Trigger(0, "tag", "<tool_call>", False), residual="")
    assert tag.endswith('root ::= "<tool_call>\\n" call "\\n</tool_call>"\n')
    bare_list = grammar.for_trigger(Trigger(0, "bare", "", True), residual="")
    assert bare_list.endswith('root ::= "[" call ( "," " "? call )* "]"\n')
    one = LazyToolGrammar(RULES, parallel=False).for_trigger(Trigger(0, "bare", "", True), residual="")
    assert one.endswith('root ::= "[" call "]"\n')


@pytest.mark.parametrize("text,literal", [
    ('say "hi"', '"say \\"hi\\""'), ("a\\b", '"a\\\\b"'), ("\n\t", '"\\x0a\\x09"'), ("é ✓", '"é ✓"'),
])
def test_literals_are_escaped(text, literal):
    assert gbnf_literal(text) == literal
