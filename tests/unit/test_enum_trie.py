"""`enum` as a prefix tree: the rendered GBNF accepts exactly the values, with shallow nesting."""

from __future__ import annotations

import json
import random
import re

from coderapi.backends.coder.enum_trie import trie_alternation

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\()|(\))|(\|)|(\?)|\s+')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\r": "\r", "\\t": "\t"}


def literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def as_regex(gbnf: str) -> str:
    """The subset of GBNF the tree uses (literals, groups, |, ?) as a Python regex."""
    out, pos = [], 0
    while pos < len(gbnf):
        match = _TOKEN.match(gbnf, pos)
        assert match, f"unexpected GBNF at {gbnf[pos:pos + 20]!r}"
        pos = match.end()
        if match.group(1) is not None:
            text = re.sub(r"\\.", lambda m: _UNESCAPE[m.group(0)], match.group(1))
            out.append(re.escape(text))
        elif match.group(2):
            out.append("(?:")
        elif match.group(3) or match.group(4) or match.group(5):
            out.append(match.group(0))
    return "".join(out)


def accepts(gbnf: str, text: str) -> bool:
    return re.fullmatch(as_regex(gbnf), text, re.DOTALL) is not None


def test_accepts_exactly_the_values_including_prefixes_of_each_other():
    values = ['"a"', '"ab"', '"abc"', '"b"', "1", "12", "null", '"x\\"y"', '"\u00e9t\u00e9"']
    gbnf = trie_alternation(values, literal)
    for value in values:
        assert accepts(gbnf, value), value
    for other in ['"', '"abcd"', '"ac"', "123", "nul", '"a', "", '"\u00e9"']:
        assert not accepts(gbnf, other), other


def test_random_enums_match_the_flat_alternation():
    rng = random.Random(7)
    for _ in range(50):
        values = [json.dumps("".join(rng.choice("ab\"\\c") for _ in range(rng.randint(0, 5))))
                  for _ in range(rng.randint(1, 30))]
        gbnf = trie_alternation(values, literal)
        probes = set(values) | {v[:-1] for v in values} | {v + "a" for v in values}
        for probe in probes:
            assert accepts(gbnf, probe) == (probe in values), (values, probe)


def test_shared_prefixes_are_written_once():
    values = [json.dumps(f"item_{i:04d}") for i in range(1000)]
    gbnf = trie_alternation(values, literal)
    assert gbnf.count('"\\"item_') == 1
    flat = " | ".join(literal(v) for v in values)
    assert len(gbnf) < len(flat) / 1.5


def test_nesting_stays_bounded_for_a_chain_of_prefixes():
    values = [json.dumps("a" * n) for n in range(1, 300)]  # each value a prefix of the next
    gbnf = trie_alternation(values, literal, max_depth=24)
    depth = deepest = 0
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', "", gbnf):
        depth += char == "("
        depth -= char == ")"
        deepest = max(deepest, depth)
    assert deepest <= 25
    assert all(accepts(gbnf, v) for v in values) and not accepts(gbnf, json.dumps("a" * 300))
