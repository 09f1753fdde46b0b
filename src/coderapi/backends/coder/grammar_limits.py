"""A static guard on every GBNF grammar before llama.cpp parses it.

llama.cpp's grammar parser and sampler are recursive C++: a group nested 20,000 deep (what the
schema converter once wrote for `"maxLength": 20000`) overflows the worker thread's stack and the
whole process dies with SIGSEGV. Measured on the vendored llama.cpp (0.3.36, 8 MiB thread stack):
nested groups crash between 18,000 and 20,000 levels (llama.cpp refuses them from about 2,000 on,
but only after recursing); a chain of 20,000 leftmost rule references takes 11 s to initialise
(quadratic); a chain of 1,000 nullable leftmost references costs 1.7 s of sampling per token, and
an object of 127 optional properties (the converter chains them) 30 times what 127 required cost.
`{m,n}` repeats are expanded by llama.cpp into n-m flat rules (no recursion per repetition), but
an upper bound over 2,000 is silently dropped (the repeat becomes unbounded), so bounds over
`max_repeat` are refused here rather than loosened.

`check_gbnf` reads the grammar with an iterative scanner (no recursion, so no input can make it
overflow) and refuses, with a 400 naming `param`, a grammar over any of `GrammarLimits`: size in
bytes, rules once llama.cpp has expanded groups and repeats, group nesting, `{m,n}` bounds, and the
longest chain of leftmost rule references (left recursion included). No llama_cpp needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from coderapi.errors import InvalidRequest


@dataclass(frozen=True)
class GrammarLimits:
    max_bytes: int = 512 * 1024  # GBNF text
    max_rules: int = 20_000  # rules and repeated items once llama.cpp has expanded groups and repeats
    max_group_depth: int = 256  # nested ( ); the parser recursed ~400 bytes of stack per level
    max_repeat: int = 2_000  # {m,n} bounds; llama.cpp drops an upper bound above 2,000
    max_left_depth: int = 64  # leftmost rule-reference chain: 127 optional properties cost 30x per token


class GrammarTooLarge(ValueError):
    """A grammar over a limit; the message says which (the caller names the request param)."""


@dataclass
class _Rule:
    alternatives: list[list[tuple]] = field(default_factory=lambda: [[]])  # (kind, target, nullable)


_NAME = re.compile(r"[A-Za-z0-9_-]+")
_REPEAT = re.compile(r"\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}")


def check_gbnf(grammar: str, param: str, limits: GrammarLimits = GrammarLimits()) -> None:
    """Raises InvalidRequest(param=param) when `grammar` is over any of `limits`."""
    try:
        measure(grammar, limits)
    except GrammarTooLarge as exc:
        raise InvalidRequest(f"The grammar built for {param} is too large: {exc}", param=param) from None


def measure(grammar: str, limits: GrammarLimits) -> None:
    size = len(grammar.encode("utf-8"))
    if size > limits.max_bytes:
        raise GrammarTooLarge(f"{size} bytes of GBNF (limit {limits.max_bytes})")
    rules = _Scanner(grammar, limits).scan()
    _check_left_depth(rules, limits.max_left_depth)


class _Scanner:
    """One pass over the text; groups become rules of their own, as llama.cpp makes them."""

    def __init__(self, text: str, limits: GrammarLimits) -> None:
        self.text, self.limits = text, limits
        self.rules: dict[str, _Rule] = {}
        self.expanded = 0  # rules llama.cpp will create
        self.groups = 0

    def _count(self, rules: int) -> None:
        self.expanded += rules
        if self.expanded > self.limits.max_rules:
            raise GrammarTooLarge(f"more than {self.limits.max_rules} rules and repeated items once expanded")

    def _new_rule(self, name: str) -> _Rule:
        self._count(1)
        return self.rules.setdefault(name, _Rule())

    def scan(self) -> dict[str, _Rule]:
        text, i, n = self.text, 0, len(self.text)
        stack: list[tuple[str, _Rule]] = []  # the rule being read, then its open groups
        open_end = False  # after "::=" or "|" a newline does not end the rule (as in llama.cpp)
        while i < n:
            c = text[i]
            if c in " \t\r":
                i += 1
                continue
            if c == "#":
                i = _line_end(text, i)
            elif c == "\n":
                if len(stack) <= 1 and not open_end:
                    stack = []
                i += 1
            elif not stack:
                i = self._rule_head(i, stack)
                open_end = True
                continue
            elif c == "|":
                stack[-1][1].alternatives.append([])
                i += 1
                open_end = True
            elif c == "(":
                if len(stack) > self.limits.max_group_depth:
                    raise GrammarTooLarge(f"groups nested more than {self.limits.max_group_depth} deep")
                self.groups += 1
                name = f"({self.groups}"
                stack.append((name, self._new_rule(name)))
                i += 1
            elif c == ")":
                if len(stack) < 2:
                    raise GrammarTooLarge("an unbalanced ')'")
                name, rule = stack.pop()
                nullable = any(all(e[2] for e in alt) for alt in rule.alternatives)
                stack[-1][1].alternatives[-1].append(("ref", name, nullable))
                i += 1
            elif c in "*+?{":
                i = self._quantifier(i, stack[-1][1])
            else:
                i = self._element(i, stack[-1][1])
            if c not in "#\n|" and stack:
                open_end = False
        return self.rules

    def _rule_head(self, i: int, stack: list) -> int:
        match = _NAME.match(self.text, i)
        rest = self.text[match.end():].lstrip(" \t") if match else ""
        if not match or not rest.startswith("::="):
            raise GrammarTooLarge(f"unreadable GBNF at offset {i}")
        name = match.group(0)
        if name in self.rules:
            self.rules[name].alternatives.append([])  # llama.cpp keeps the last definition; either way, bounded
            stack.append((name, self.rules[name]))
        else:
            stack.append((name, self._new_rule(name)))
        return self.text.index("::=", match.end()) + 3

    def _element(self, i: int, rule: _Rule) -> int:
        text, c = self.text, self.text[i]
        if c == '"':
            end = _closing(text, i + 1, '"')
            rule.alternatives[-1].append(("t", None, end == i + 1))
            return end + 1
        if c == "[":
            end = _closing(text, i + 1, "]")
            rule.alternatives[-1].append(("t", None, False))
            return end + 1
        if c in "<!":
            end = text.find(">", i)
            if end < 0:
                raise GrammarTooLarge(f"unreadable token at offset {i}")
            rule.alternatives[-1].append(("t", None, False))
            return end + 1
        if c == ".":
            rule.alternatives[-1].append(("t", None, False))
            return i + 1
        match = _NAME.match(text, i)
        if not match:
            raise GrammarTooLarge(f"unreadable GBNF at offset {i}")
        rule.alternatives[-1].append(("ref", match.group(0), None))  # nullability resolved later
        return match.end()

    def _quantifier(self, i: int, rule: _Rule) -> int:
        alt = rule.alternatives[-1]
        if not alt:
            raise GrammarTooLarge(f"a repeat with nothing before it at offset {i}")
        c = self.text[i]
        low, high, end = {"*": (0, None, i + 1), "+": (1, None, i + 1), "?": (0, 1, i + 1)}.get(c, (0, 0, 0))
        if c == "{":
            match = _REPEAT.match(self.text, i)
            if not match:
                raise GrammarTooLarge(f"unreadable repeat at offset {i}")
            low = int(match.group(1))
            high = low if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
            end = match.end()
            for bound in (low, high):
                if bound is not None and bound > self.limits.max_repeat:
                    raise GrammarTooLarge(f"a repeat bound of {bound} (limit {self.limits.max_repeat})")
        kind, target, nullable = alt[-1]
        # llama.cpp writes the item `low` times inline, then one rule per optional repetition
        self._count(max(low - 1, 0) + (1 if high is None else max(high - low, 0)))
        alt[-1] = (kind, target, True if low == 0 else nullable)
        return end


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _closing(text: str, i: int, quote: str) -> int:
    n = len(text)
    while i < n and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    if i >= n:
        raise GrammarTooLarge(f"an unterminated {quote} literal")
    return i


def _nullable_rules(rules: dict[str, _Rule]) -> set[str]:
    """Rules that can match the empty string (fixed point, no recursion)."""
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, rule in rules.items():
            if name not in nullable and any(all(_is_nullable(e, nullable) for e in alt) for alt in rule.alternatives):
                nullable.add(name)
                changed = True
    return nullable


def _is_nullable(element: tuple, nullable: set[str]) -> bool:
    kind, target, flag = element
    return bool(flag) or (kind == "ref" and target in nullable)


def _check_left_depth(rules: dict[str, _Rule], limit: int) -> None:
    """The longest chain of leftmost references (through nullable prefixes), iteratively."""
    nullable = _nullable_rules(rules)
    edges: dict[str, set[str]] = {}
    for name, rule in rules.items():
        heads = edges.setdefault(name, set())
        for alt in rule.alternatives:
            for element in alt:
                if element[0] == "ref":
                    if element[1] not in rules:
                        raise GrammarTooLarge(f"an undefined rule {element[1]!r}")
                    heads.add(element[1])
                if not _is_nullable(element, nullable):
                    break
    depth: dict[str, int] = {}
    for root in edges:
        if root in depth:
            continue
        on_path, stack = {root}, [(root, iter(edges[root]))]
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(name)
                depth[name] = 1 + max((depth[c] for c in edges[name]), default=0)
                if depth[name] > limit:
                    raise GrammarTooLarge(f"a chain of more than {limit} leftmost rule references")
            elif child in on_path:
                raise GrammarTooLarge(f"left recursion through {child!r}")
            elif child not in depth:
                on_path.add(child)
                stack.append((child, iter(edges[child])))
