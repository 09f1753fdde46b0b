"""GBNF for the scripted engine: a recognizer that follows a scripted answer while the grammar allows it.

A model under a grammar writes the tokens it prefers among those the grammar allows. The scripted
engine does the same with characters: it follows its script while the grammar accepts the next
character, stops where the grammar is complete and the script ends or leaves it, and otherwise
finishes the answer with the shortest text the grammar allows from there. Free text under a JSON
grammar therefore becomes the shortest valid JSON (required properties, enums, bounds and lengths
as the grammar built from the schema demands); a script that is already valid comes out unchanged.

Parsing follows llama.cpp's GBNF (rules `name ::= ...`, literals, character classes, `.`, groups,
`*` `+` `?` `{m}` `{m,}` `{m,n}`, `#` comments); a grammar it cannot read, or one without `root`, is
a `GrammarError`. Recognition is llama.cpp's too: a set of stacks of positions in rule sequences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_RULE_START = re.compile(r"[A-Za-z0-9_-]+\s*::=")
_REPEAT = re.compile(r"\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}")
_PREFERRED = "a0 "  # characters tried first when a class allows several
_MAX_EXPANSION = 20_000  # stacks one step may create: beyond it, a grammar too ambiguous for a fake


class GrammarError(ValueError):
    """The grammar could not be parsed (or has no `root` rule)."""


@dataclass(frozen=True)
class Chars:
    ranges: tuple[tuple[int, int], ...]  # inclusive code point ranges
    negated: bool = False

    def matches(self, char: str) -> bool:
        inside = any(lo <= ord(char) <= hi for lo, hi in self.ranges)
        return inside != self.negated

    @cached_property
    def example(self) -> str:
        for char in _PREFERRED:
            if self.matches(char):
                return char
        if not self.negated:
            return chr(self.ranges[0][0])
        return next(chr(c) for c in range(0x20, 0x110000) if self.matches(chr(c)))


# A sequence is a tuple of atoms: a Chars (one character) or an int (a rule's index).
Stack = tuple[tuple[int, int], ...]  # (sequence index, position) frames, the top last


class Grammar:
    def __init__(self, text: str) -> None:
        self.sequences: list[tuple] = []
        self.rules: list[list[int]] = []  # rule index -> its alternatives' sequence indexes
        self._names: dict[str, int] = {}
        _Parser(text, self).parse()
        if "root" not in self._names:
            raise GrammarError("the grammar has no root rule")
        undefined = [name for name, rule in self._names.items() if not self.rules[rule]]
        if undefined:
            raise GrammarError(f"undefined rule {undefined[0]!r}")
        self.root = self._names["root"]
        self._shortest = _shortest_texts(self)

    # -- building (used by the parser) --------------------------------------------------------

    def rule(self, name: str | None = None) -> int:
        if name is not None and name in self._names:
            return self._names[name]
        self.rules.append([])
        if name is not None:
            self._names[name] = len(self.rules) - 1
        return len(self.rules) - 1

    def add_alternative(self, rule: int, atoms: list) -> None:
        self.sequences.append(tuple(atoms))
        self.rules[rule].append(len(self.sequences) - 1)

    # -- recognizing ----------------------------------------------------------------------------

    def start(self) -> set[Stack]:
        return self._expand([((seq, 0),) for seq in self.rules[self.root]])

    def advance(self, stacks: set[Stack], char: str) -> set[Stack]:
        moved = []
        for stack in stacks:
            if stack:
                seq, pos = stack[-1]
                if self.sequences[seq][pos].matches(char):
                    moved.append(stack[:-1] + ((seq, pos + 1),))
        return self._expand(moved)

    @staticmethod
    def accepting(stacks: set[Stack]) -> bool:
        return () in stacks

    def completion(self, stacks: set[Stack]) -> str:
        """The shortest text that takes one of `stacks` to the end of the grammar."""
        return min((self._rest(stack) for stack in stacks), key=len)

    def _rest(self, stack: Stack) -> str:
        return "".join(self._shortest_from(seq, pos) for seq, pos in reversed(stack))

    def _shortest_from(self, seq: int, pos: int) -> str:
        return "".join(self._atom_text(atom) for atom in self.sequences[seq][pos:])

    def _atom_text(self, atom) -> str:
        return atom.example if isinstance(atom, Chars) else self._shortest[atom]

    def _expand(self, stacks: list[Stack]) -> set[Stack]:
        """Every stack whose top is a character to match (or the empty stack: the grammar is done)."""
        done: set[Stack] = set()
        seen: set[Stack] = set()
        todo = list(stacks)
        while todo:
            stack = todo.pop()
            if stack in seen:
                continue
            seen.add(stack)
            if len(seen) > _MAX_EXPANSION:
                raise GrammarError("the grammar is too ambiguous for the scripted engine")
            if not stack:
                done.add(stack)
                continue
            seq, pos = stack[-1]
            atoms = self.sequences[seq]
            if pos == len(atoms):
                todo.append(stack[:-1])
            elif isinstance(atoms[pos], Chars):
                done.add(stack)
            elif len(stack) <= len(self.rules) + 64:  # deeper without consuming: left recursion
                # a rule called last replaces its caller's frame, so repetitions do not deepen the stack
                rest = stack[:-1] + (((seq, pos + 1),) if pos + 1 < len(atoms) else ())
                todo.extend(rest + ((alt, 0),) for alt in self.rules[atoms[pos]])
        return done


def constrained_text(grammar: Grammar, script: str) -> str:
    """What a model that prefers `script` writes under `grammar` (see the module's docstring)."""
    stacks, written = grammar.start(), 0
    for char in script:
        moved = grammar.advance(stacks, char)
        if not moved:
            break
        stacks, written = moved, written + 1
    if grammar.accepting(stacks):
        return script[:written]
    return script[:written] + grammar.completion(stacks)


def _shortest_texts(grammar: Grammar) -> list[str]:
    """Each rule's shortest derivation: lengths to a fixed point (rules refer to each other), then
    the texts of the chosen alternatives, children first."""
    inf = float("inf")
    length = [inf] * len(grammar.rules)
    choice = [-1] * len(grammar.rules)
    changed = True
    while changed:
        changed = False
        for rule in range(len(grammar.rules) - 1, -1, -1):  # rules made while parsing a rule come after it
            for seq in grammar.rules[rule]:
                size = sum(1 if isinstance(atom, Chars) else length[atom] for atom in grammar.sequences[seq])
                if size < length[rule]:
                    length[rule], choice[rule], changed = size, seq, True
    if length[grammar.root] == inf:
        raise GrammarError("the root rule derives no finite text")
    texts: list[str | None] = [None] * len(grammar.rules)
    for top in range(len(grammar.rules)):
        todo = [top]
        while todo:
            rule = todo[-1]
            if texts[rule] is not None or choice[rule] < 0:
                todo.pop()
                continue
            atoms = grammar.sequences[choice[rule]]
            missing = [a for a in atoms if not isinstance(a, Chars) and texts[a] is None and choice[a] >= 0]
            if missing:
                todo.extend(missing)
                continue
            texts[rule] = "".join(a.example if isinstance(a, Chars) else texts[a] or "" for a in atoms)
            todo.pop()
    return [text if text is not None else "" for text in texts]


class _Parser:
    def __init__(self, text: str, grammar: Grammar) -> None:
        self.text, self.at, self.g = text, 0, grammar

    def parse(self) -> None:
        self._space()
        while self.at < len(self.text):
            name = self._name()
            self._space()
            if not self.text.startswith("::=", self.at):
                raise GrammarError(f"expected ::= after {name!r} at {self.at}")
            self.at += 3
            rule = self.g.rule(name)
            if self.g.rules[rule]:
                raise GrammarError(f"rule {name!r} is defined twice")
            self._alternatives(rule)
            if not self.g.rules[rule]:
                raise GrammarError(f"rule {name!r} is empty")

    def _alternatives(self, rule: int) -> None:
        while True:
            self.g.add_alternative(rule, self._sequence())
            if not self._peek("|"):
                return
            self.at += 1

    def _sequence(self) -> list:
        atoms: list = []
        while True:
            self._space()
            if self.at >= len(self.text) or self.text[self.at] in "|)" or self._rule_starts():
                return atoms
            start = len(atoms)
            atoms.extend(self._primary())
            self._space()
            atoms[start:] = self._repeated(atoms[start:])

    def _primary(self) -> list:
        char = self.text[self.at]
        if char == '"':
            self.at += 1
            out = []
            while self._need() != '"':
                out.append(Chars(((ord(c := self._char()), ord(c)),)))
            self.at += 1
            return out
        if char == "[":
            return [self._class()]
        if char == ".":
            self.at += 1
            return [Chars((), negated=True)]  # any character
        if char == "(":
            self.at += 1
            group = self.g.rule()
            self._alternatives(group)
            self._space()
            if self._need() != ")":
                raise GrammarError(f"expected ) at {self.at}")
            self.at += 1
            return [group]
        return [self.g.rule(self._name())]

    def _class(self) -> Chars:
        self.at += 1
        negated = self.text.startswith("^", self.at)
        self.at += negated
        ranges = []
        while self._need() != "]":
            lo = self._char()
            hi = lo
            if self.text.startswith("-", self.at) and self.text[self.at + 1 : self.at + 2] not in ("]", ""):
                self.at += 1
                hi = self._char()
            ranges.append((ord(lo), ord(hi)))
        self.at += 1
        return Chars(tuple(ranges), negated)

    def _repeated(self, atoms: list) -> list:
        """Applies a `*`, `+`, `?` or `{m,n}` after a primary: a rule per optional repetition."""
        if not atoms or self.at >= len(self.text):
            return atoms
        char = self.text[self.at]
        low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}.get(char, (None, None))
        if low is not None:
            self.at += 1
        else:
            match = _REPEAT.match(self.text, self.at)
            if not match:
                return atoms
            self.at = match.end()
            low = int(match.group(1))
            high = low if match.group(2) is None else (int(match.group(3)) if match.group(3) else None)
        item = self.g.rule()
        self.g.add_alternative(item, atoms)
        tail = self.g.rule()
        if high is None:  # tail ::= item tail | (nothing)
            self.g.add_alternative(tail, [item, tail])
            self.g.add_alternative(tail, [])
        else:  # tail_k ::= item tail_{k-1} | (nothing), k optional repetitions
            self.g.add_alternative(tail, [])
            for _ in range(high - low):
                longer = self.g.rule()
                self.g.add_alternative(longer, [item, tail])
                self.g.add_alternative(longer, [])
                tail = longer
        return [item] * low + [tail]

    def _char(self) -> str:
        char = self._need()
        self.at += 1
        if char != "\\":
            return char
        code = self._need()
        self.at += 1
        width = {"x": 2, "u": 4, "U": 8}.get(code)
        if width is None:
            return {"n": "\n", "r": "\r", "t": "\t"}.get(code, code)
        digits = self.text[self.at : self.at + width]
        self.at += width
        try:
            return chr(int(digits, 16))
        except ValueError:
            raise GrammarError(f"bad escape \\{code}{digits}") from None

    def _name(self) -> str:
        match = _NAME.match(self.text, self.at)
        if not match:
            raise GrammarError(f"expected a rule name at {self.at}")
        self.at = match.end()
        return match.group()

    def _rule_starts(self) -> bool:
        return _RULE_START.match(self.text, self.at) is not None

    def _peek(self, char: str) -> bool:
        self._space()
        return self.text.startswith(char, self.at)

    def _need(self) -> str:
        if self.at >= len(self.text):
            raise GrammarError("unexpected end of grammar")
        return self.text[self.at]

    def _space(self) -> None:
        while self.at < len(self.text):
            if self.text[self.at].isspace():
                self.at += 1
            elif self.text[self.at] == "#":
                end = self.text.find("\n", self.at)
                self.at = len(self.text) if end < 0 else end
            else:
                return
