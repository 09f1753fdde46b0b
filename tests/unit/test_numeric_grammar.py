"""The number automaton against the predicate it stands for, exhaustively on small ranges, and its GBNF."""

from __future__ import annotations

import itertools
import json
import random
import re
from decimal import Decimal

import pytest
from jsonschema import Draft4Validator, Draft202012Validator

from coderapi.backends.coder.automaton import render_gbnf
from coderapi.backends.coder.numeric_grammar import (
    EXTRA_FRACTION_DIGITS,
    NumericSchemaError,
    bounds,
    number_automaton,
)

NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def _fraction_digits(value) -> int:
    return max(0, -Decimal(repr(value) if isinstance(value, float) else value).normalize().as_tuple().exponent)


def expected(text: str, schema: dict) -> bool:
    """JSON number text (no exponent, no negative zero), of the schema's type, valid in decimal arithmetic,
    within the documented subset: at most 15 digits once a "." is written, at most m fraction digits, and
    for `number`, at most 15 integer digits on a side without a bound."""
    if not NUMBER_TEXT.fullmatch(text):
        return False
    integer, fraction = (text.lstrip("-").split(".") + [""])[:2]
    if schema["type"] == "integer" and "." in text:
        return False
    value = Decimal(text)
    if value == 0 and text.startswith("-"):
        return False
    if "." in text and len(integer) + len(fraction) > 15:
        return False
    if "multipleOf" in schema:
        m = _fraction_digits(schema["multipleOf"])
    else:
        m = max([_fraction_digits(schema[k]) for k in schema if k != "type" and not isinstance(schema[k], bool)] + [0])
        m += EXTRA_FRACTION_DIGITS
    if len(fraction) > m:
        return False
    lower, upper = bounds(schema)
    unbounded_side = lower is None if text.startswith("-") else upper is None
    if schema["type"] == "number" and unbounded_side and len(integer) > 15:  # the other bound is small here
        return False
    if lower and (value < lower[0] or (lower[1] and value == lower[0])):
        return False
    if upper and (value > upper[0] or (upper[1] and value == upper[0])):
        return False
    return "multipleOf" not in schema or value % Decimal(repr(schema["multipleOf"])) == 0


def check(schema: dict, candidates, validator=Draft202012Validator) -> int:
    automaton = number_automaton(schema)
    accepted = 0
    for text in set(candidates):
        got = automaton.accepts(text)
        assert got == expected(text, schema), (text, got)
        if got:
            accepted += 1
            assert validator(schema).is_valid(json.loads(text)), text
    return accepted


def signed(strings):
    for s in strings:
        yield s
        yield "-" + s


def digit_strings(lo: int, hi: int):
    for n in range(lo, hi + 1):
        yield from ("".join(t) for t in itertools.product("0123456789", repeat=n))


def short_strings(n: int = 4):
    for k in range(1, n + 1):
        yield from ("".join(t) for t in itertools.product("-.0123456789", repeat=k))


def test_integer_range_is_exact_over_all_short_strings():
    schema = {"type": "integer", "minimum": -37, "maximum": 1234}
    candidates = itertools.chain(digit_strings(1, 5), ("-" + s for s in digit_strings(1, 4)), short_strings())
    assert check(schema, candidates) == 37 + 1 + 1234


def test_number_quarter_steps_with_exclusive_maximum():
    schema = {"type": "number", "minimum": 0.5, "exclusiveMaximum": 2.25, "multipleOf": 0.25}
    fractions = [f"{i}.{f}" for i in range(0, 4) for f in digit_strings(1, 3)]
    accepted = check(schema, itertools.chain(signed(fractions), signed(digit_strings(1, 3)), short_strings()))
    automaton = number_automaton(schema)
    assert all(automaton.accepts(t) for t in ("0.5", "0.75", "1", "1.0", "1.25", "2", "2.00"))
    assert not any(automaton.accepts(t) for t in ("0.25", "2.25", "0.6", "-1", "1.125", "2.250"))
    assert accepted > 7


def test_integer_multiple_of_seven_without_bounds_has_no_length_limit():
    schema = {"type": "integer", "multipleOf": 7}
    check(schema, itertools.chain(signed(digit_strings(1, 4)), short_strings()))
    automaton = number_automaton(schema)
    rng = random.Random(7)
    for _ in range(300):
        value = rng.randrange(10**30)
        for text in (str(value), f"-{value}"):
            assert automaton.accepts(text) == (value % 7 == 0 and text != "-0"), text
        assert automaton.accepts(str(value * 7))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": -50, "maximum": -3},
        {"type": "number", "exclusiveMaximum": -0.5},
        {"type": "number", "minimum": -12.5, "maximum": -0.25, "multipleOf": 0.25},
    ],
)
def test_negative_only_ranges(schema):
    fractions = [f"{i}.{f}" for i in range(0, 15) for f in digit_strings(1, 2)]
    accepted = check(schema, itertools.chain(signed(fractions), signed(digit_strings(1, 3)), short_strings(3)))
    assert accepted > 0
    automaton = number_automaton(schema)
    assert not automaton.accepts("0") and not automaton.accepts("-0")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "number", "minimum": -1.5, "maximum": 2},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "integer", "exclusiveMinimum": 10, "multipleOf": 3},
        {"type": "number", "minimum": -10, "maximum": 10, "multipleOf": 1.5},
        {"type": "integer", "minimum": -3.5, "maximum": 3.5, "multipleOf": 0.5},
        {"type": "number", "minimum": 99.875, "maximum": 1000.125, "multipleOf": 0.125},
        {"type": "number", "minimum": 1, "multipleOf": 0.5},
        {"type": "integer", "maximum": 0},
    ],
)
def test_random_candidates(schema):
    rng = random.Random(json.dumps(schema))

    def candidate():
        integer = rng.choice(["0", str(rng.randrange(20)), str(rng.randrange(2000)), str(rng.randrange(10**8))])
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randrange(10)))
        text = rng.choice(["", "-"]) + integer + (rng.choice([".", ""]) + fraction if fraction else "")
        return text if rng.random() > 0.05 else text.replace("1", "01", 1)

    candidates = [candidate() for _ in range(4000)]
    assert check(schema, itertools.chain(candidates, signed(digit_strings(1, 3)), short_strings(3))) > 0


def test_draft4_boolean_exclusive_bounds():
    schema = {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 5, "exclusiveMaximum": True}
    assert check(schema, itertools.chain(signed(digit_strings(1, 3)), short_strings(3)), Draft4Validator) == 4


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": 5, "maximum": 4},
        {"type": "integer", "minimum": 1, "maximum": 6, "multipleOf": 7},
        {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2},
        {"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1},
        {"type": "integer", "multipleOf": 1001},
        {"type": "number", "multipleOf": 0.1001},
    ],
)
def test_empty_or_too_large_constraints_raise(schema):
    with pytest.raises(NumericSchemaError):
        number_automaton(schema)


def _alternatives(body: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0) if body[:i].count('"') % 2 == 0 else 0
        if depth == 0 and body.startswith(" | ", i):
            parts.append(body[start:i])
            start = i + 3
    return parts + [body[start:]]


def _chars(atom: str) -> set[str]:
    if atom.startswith('"'):
        return {atom[1:-1]}
    inner, chars = atom[1:-1], set()
    for match in re.finditer(r"(.)-(.)|(.)", inner):
        if match.group(3):
            chars.add(match.group(3))
        else:
            chars.update(chr(c) for c in range(ord(match.group(1)), ord(match.group(2)) + 1))
    return chars


def interpret(rules: dict[str, str], start: str):
    """A matcher for the right-linear rules render_gbnf writes, to compare with the automaton."""
    table = {}
    for name, body in rules.items():
        alts = []
        for alt in _alternatives(body):
            if alt == '""':
                alts.append((None, None))
                continue
            if alt.startswith("("):
                end = alt.index(")")
                atom, target = alt[1:end], alt[end + 1:].strip()
                chars = set().union(*(_chars(a) for a in _alternatives(atom.strip())))
            else:
                atom, _, target = alt.partition(" ")
                chars = _chars(atom)
            alts.append((chars, target or ""))
        table[name] = alts

    def accepts(text: str) -> bool:
        current = {start}
        for char in text:
            current = {t for s in current if s for chars, t in table[s] if chars and char in chars}
        return any(s == "" or any(chars is None for chars, _ in table[s]) for s in current)

    return accepts


def gbnf_parses(grammar: str) -> bool:
    llama_cpp = pytest.importorskip("llama_cpp")
    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "minimum": -37, "maximum": 1234},
        {"type": "number", "minimum": 0.5, "exclusiveMaximum": 2.25, "multipleOf": 0.25},
        {"type": "integer", "multipleOf": 7},
        {"type": "number", "exclusiveMaximum": -0.5},
    ],
)
def test_rendered_grammar_matches_the_automaton_and_parses_in_llama_cpp(schema):
    automaton = number_automaton(schema)
    rules = render_gbnf(automaton, lambda i: f"n{i}")
    matcher = interpret(rules, "n0")
    candidates = list(itertools.chain(signed(digit_strings(1, 4)), short_strings(3),
                                      (f"{i}.{f}" for i in range(3) for f in digit_strings(1, 3))))
    assert [matcher(t) for t in candidates] == [automaton.accepts(t) for t in candidates]
    grammar = "root ::= n0\n" + "\n".join(f"{name} ::= {body}" for name, body in rules.items()) + "\n"
    assert gbnf_parses(grammar)
    assert not gbnf_parses(grammar.replace(" ::= ", " ::= ( ", 1))  # the check can fail
    assert not gbnf_parses(grammar.replace("n1 ::=", "n1x ::="))
