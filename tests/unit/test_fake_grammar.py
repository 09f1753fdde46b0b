"""fake_grammar: GBNF read as llama.cpp reads it, and the shortest completion (hypothesis over schemas)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.backends.coder.grammars import schema_to_gbnf
from coderapi.engines.fake_grammar import Grammar, GrammarError, constrained_text


def accepts(grammar: str, text: str) -> bool:
    g = Grammar(grammar)
    stacks = g.start()
    for char in text:
        stacks = g.advance(stacks, char)
        if not stacks:
            return False
    return g.accepting(stacks)


@pytest.mark.parametrize(
    ("grammar", "yes", "no"),
    [
        ('root ::= "a" [b-d]+ "e"?', ["ab", "abce", "adddd"], ["a", "ae", "abx"]),
        ('root ::= x{2,3}\nx ::= [0-9]', ["12", "123"], ["1", "1234"]),
        ('root ::= [^"\\\\] "\\x41" # a comment\n', ["zA", " A"], ['"A', "\\A", "zB"]),
        ('root ::= ( "a" | "b" )* "."', [".", "abba."], ["ab", "c."]),
        ('root ::= . "\\u00e9"', ["xé", "éé"], ["x", "xe"]),
        ('root ::= "q"{3}', ["qqq"], ["qq", "qqqq"]),
    ],
)
def test_recognizes_what_llama_cpp_accepts(grammar, yes, no):
    assert all(accepts(grammar, text) for text in yes)
    assert not any(accepts(grammar, text) for text in no)


@pytest.mark.parametrize("grammar", ["root ::= (", 'x ::= "a"', 'root ::= y', 'root ::= "a"\nroot ::= "b"', "root ::= [a"])
def test_unreadable_grammars_are_refused(grammar):
    with pytest.raises(GrammarError):
        Grammar(grammar)


def test_the_script_is_followed_then_completed_by_the_shortest_text():
    g = Grammar('root ::= "{" "\\"a\\":" [0-9]+ "}"')
    assert constrained_text(g, '{"a":42} trailing') == '{"a":42}'
    assert constrained_text(g, '{"a":4x') == '{"a":4}'
    assert constrained_text(g, "prose") == '{"a":0}'


_LEAVES = st.one_of(
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
              st.integers(-50, 50), st.integers(0, 100)),
    st.builds(lambda lo, span: {"type": "string", "minLength": lo, "maxLength": lo + span},
              st.integers(0, 5), st.integers(0, 5)),
    st.builds(lambda values: {"enum": values}, st.lists(st.sampled_from(["x", "yy", 3, None, True]), min_size=1,
                                                       max_size=4, unique=True)),
)
_SCHEMAS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda items, n: {"type": "array", "items": items, "minItems": n, "maxItems": n + 2},
                  inner, st.integers(0, 3)),
        st.builds(lambda props: {"type": "object", "properties": props, "required": sorted(props)},
                  st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(_SCHEMAS, st.sampled_from(["", "Hello!", '{"a": 1, "b": [true, null]}', "[1, 2, 3]", '"text"', "7"]))
def test_any_script_under_a_schema_grammar_gives_a_valid_instance(schema, script):
    text = constrained_text(Grammar(schema_to_gbnf(schema, "p")), script)
    jsonschema.validate(json.loads(text), schema)
