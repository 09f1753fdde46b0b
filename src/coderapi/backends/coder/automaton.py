"""Small deterministic automata over characters: explore, prune, minimize and render as GBNF.

An automaton is built from a start state and a step function (state, char) -> state | None over an
alphabet; `explore` lists the reachable states, drops those from which no accepting state can be
reached (a grammar must never lead the sampler into a dead end), merges equivalent states (Moore's
partition refinement) and numbers them from 0 (the start). `render_gbnf` writes one right-linear
GBNF rule per state. No llama_cpp needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


class AutomatonTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Automaton:
    """State 0 is the start; `transitions[s]` maps a character to the next state."""

    transitions: tuple[dict[str, int], ...]
    accepting: frozenset[int]

    @property
    def empty(self) -> bool:
        return not self.transitions

    def accepts(self, text: str) -> bool:
        if self.empty:
            return False
        state = 0
        for char in text:
            state = self.transitions[state].get(char)
            if state is None:
                return False
        return state in self.accepting


def explore(
    start: Hashable,
    step: Callable[[Hashable, str], Hashable | None],
    accepting: Callable[[Hashable], bool],
    alphabet: Iterable[str],
    max_states: int,
) -> Automaton:
    alphabet = tuple(alphabet)
    index = {start: 0}
    states = [start]
    edges: list[dict[str, int]] = []
    queue = deque([start])
    while queue:
        state = queue.popleft()
        out = {}
        for char in alphabet:
            nxt = step(state, char)
            if nxt is None:
                continue
            if nxt not in index:
                if len(states) >= max_states:
                    raise AutomatonTooLarge(f"more than {max_states} states")
                index[nxt] = len(states)
                states.append(nxt)
                queue.append(nxt)
            out[char] = index[nxt]
        edges.append(out)
    final = {i for i, s in enumerate(states) if accepting(s)}
    return _minimize(_prune(edges, final), alphabet)


def _prune(edges: list[dict[str, int]], final: set[int]) -> tuple[list[dict[str, int]], set[int]]:
    """Keeps the states from which an accepting state is reachable (all are reachable from 0)."""
    reverse: list[list[int]] = [[] for _ in edges]
    for src, out in enumerate(edges):
        for dst in out.values():
            reverse[dst].append(src)
    alive = set(final)
    queue = deque(final)
    while queue:
        for src in reverse[queue.popleft()]:
            if src not in alive:
                alive.add(src)
                queue.append(src)
    if 0 not in alive:
        return [], set()
    edges = [{c: d for c, d in out.items() if d in alive} if i in alive else {} for i, out in enumerate(edges)]
    return edges, final & alive


def _minimize(pruned: tuple[list[dict[str, int]], set[int]], alphabet: tuple[str, ...]) -> Automaton:
    edges, final = pruned
    if not edges:
        return Automaton((), frozenset())
    alive = _reachable(edges)
    block = {s: int(s in final) for s in alive}
    count = len(set(block.values()))
    while True:
        signatures: dict[tuple, int] = {}
        refined = {}
        for s in alive:
            sig = (block[s], *(block.get(edges[s].get(c, -1), -1) for c in alphabet))
            refined[s] = signatures.setdefault(sig, len(signatures))
        block = refined
        if len(signatures) == count:
            break
        count = len(signatures)
    # renumber blocks in breadth-first order from the start so state 0 is the start
    order = {block[0]: 0}
    queue = deque([0])
    representative = {0: 0}
    while queue:
        s = queue.popleft()
        for c in alphabet:
            d = edges[s].get(c)
            if d is not None and block[d] not in order:
                order[block[d]] = len(order)
                representative[order[block[d]]] = d
                queue.append(d)
    transitions = tuple(
        {c: order[block[d]] for c, d in edges[representative[i]].items()} for i in range(len(order))
    )
    accepting = frozenset(order[block[s]] for s in final if s in block)
    return Automaton(transitions, accepting)


def _reachable(edges: list[dict[str, int]]) -> list[int]:
    seen = {0}
    queue = deque([0])
    while queue:
        for d in edges[queue.popleft()].values():
            if d not in seen:
                seen.add(d)
                queue.append(d)
    return sorted(seen)


def _char_class(chars: set[str]) -> str:
    """`"-"`, `"."` or a class such as `[0-35-9.]` (the '-' never shares a class)."""
    digits = sorted(c for c in chars if c.isdigit())
    parts, i = [], 0
    while i < len(digits):
        j = i
        while j + 1 < len(digits) and ord(digits[j + 1]) == ord(digits[j]) + 1:
            j += 1
        parts.append(digits[i] if i == j else f"{digits[i]}-{digits[j]}")
        i = j + 1
    others = sorted(chars - set(digits) - {"-"})
    out = []
    if parts or others:
        inner = "".join(parts) + "".join(others)
        out.append(f'"{inner}"' if len(chars - {"-"}) == 1 and not parts else f"[{inner}]")
    if "-" in chars:
        out.append('"-"')
    return " | ".join(out) if len(out) == 1 else "(" + " | ".join(out) + ")"


def render_gbnf(automaton: Automaton, name: Callable[[int], str]) -> dict[str, str]:
    """One rule per state, `name(0)` first; a state that only accepts is inlined as the end."""
    if automaton.empty:
        raise ValueError("an empty automaton has no grammar")
    t = automaton.transitions
    final_only = {s for s in automaton.accepting if not t[s]}
    rules = {}
    for s, out in enumerate(t):
        if s in final_only and s != 0:
            continue
        by_target: dict[int, set[str]] = {}
        for char, d in out.items():
            by_target.setdefault(d, set()).add(char)
        alts = [
            _char_class(chars) + ("" if d in final_only else f" {name(d)}") for d, chars in sorted(by_target.items())
        ]
        if s in automaton.accepting:
            alts.append('""')
        rules[name(s)] = " | ".join(alts)
    return rules
