"""The JSON number text of an `integer`/`number` schema with bounds and `multipleOf`, as an automaton.

Values are handled as scaled integers v = x * 10^m in Decimal arithmetic. With `multipleOf`
q = p / 10^m (m fraction digits of q), x is a multiple of q exactly when the digit string "integer
part + m fraction digits, missing ones read as zeros" is divisible by p: the automaton tracks the
remainder mod p. Without `multipleOf`, m = fraction digits of the bounds + 6 (for `number`) or 0.
Ranges are followed digit by digit, one branch per integer-part length, each branch tight to its
lower bound, its upper bound, or free.

The language is a subset of the valid numbers, never empty when a value is expressible:
- no exponent, no leading zeros, no "-0" (JSON text);
- `integer`: no "." at all; without an upper bound any number of digits;
- `number`: at most 15 digits in all once a "." is written (so a binary double keeps strict
  comparisons and multiples exact); without an upper/lower bound the integer part has at most
  15 digits (or as many as the other bound needs).
`multipleOf` is decided in decimal: a validator dividing binary doubles (Python's jsonschema with
q = 0.1 finds 0.3 / 0.1 = 2.9999999999999996) may refuse multiples of non-binary fractions.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from functools import lru_cache
from typing import Any

from coderapi.backends.coder.automaton import Automaton, AutomatonTooLarge, explore

NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
MAX_MODULUS = 1000
MAX_STATES = 60000
MAX_DIGITS = 15  # digits a number with a "." may have in all
EXTRA_FRACTION_DIGITS = 6
_ALPHABET = "-.0123456789"
_CTX = Context(prec=400)
_LONG = ("long",)


class NumericSchemaError(ValueError):
    """The constraints admit no value the grammar can write, or would need too large a grammar."""


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NumericSchemaError(f"{value!r} is not a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _fraction_digits(value: Decimal) -> int:
    return max(0, -value.normalize(_CTX).as_tuple().exponent)


def bounds(schema: dict[str, Any]) -> tuple[tuple[Decimal, bool] | None, tuple[Decimal, bool] | None]:
    """(lower, upper) as (value, exclusive); draft 4's boolean exclusiveMinimum/Maximum included."""

    def side(inclusive_key: str, exclusive_key: str, tighter) -> tuple[Decimal, bool] | None:
        found = []
        if inclusive_key in schema:
            found.append((_decimal(schema[inclusive_key]), schema.get(exclusive_key) is True))
        if exclusive_key in schema and not isinstance(schema[exclusive_key], bool):
            found.append((_decimal(schema[exclusive_key]), True))
        return tighter(found) if found else None

    lower = side("minimum", "exclusiveMinimum", lambda f: max(f, key=lambda b: (b[0], b[1])))
    upper = side("maximum", "exclusiveMaximum", lambda f: min(f, key=lambda b: (b[0], not b[1])))
    return lower, upper


def number_automaton(schema: dict[str, Any]) -> Automaton:
    """The JSON number texts that are valid for `schema` (type `integer` or `number`)."""
    lower, upper = bounds(schema)
    q = _decimal(schema["multipleOf"]) if "multipleOf" in schema else None
    return _cached(schema.get("type") == "integer", lower, upper, q)


@lru_cache(maxsize=256)
def _cached(integer: bool, lower, upper, q: Decimal | None) -> Automaton:
    if q is not None:
        if q <= 0:
            raise NumericSchemaError("multipleOf must be greater than 0")
        m = _fraction_digits(q)
        p = int(q.scaleb(m, _CTX))
        if p > MAX_MODULUS:
            raise NumericSchemaError(
                f"multipleOf {q} is enforced only when it is at most {MAX_MODULUS} units of its last digit"
            )
    else:
        p = 1
        m = 0 if integer else max(_fraction_digits(b[0]) for b in (lower, upper, (Decimal(0), False)) if b)
        m += 0 if integer else EXTRA_FRACTION_DIGITS
    low = _scaled(lower, m, ROUND_CEILING)
    high = _scaled(upper, m, ROUND_FLOOR)
    sides = {}
    if high is None or high >= 0:
        sides["+"] = _Side(max(low, 0) if low is not None else 0, high, m, p, integer)
    if low is None or low <= -1:
        sides["-"] = _Side(max(1, -high) if high is not None else 1, -low if low is not None else None, m, p, integer)
    sides = {k: s for k, s in sides.items() if s.hi is None or s.hi >= s.lo}
    stepper = _Stepper(sides)
    try:
        automaton = explore(("start",), stepper.step, stepper.accepts, _ALPHABET, MAX_STATES)
    except AutomatonTooLarge:
        raise NumericSchemaError("the numeric constraints need too large a grammar") from None
    if automaton.empty:
        raise NumericSchemaError("no number the grammar can write satisfies the numeric constraints")
    return automaton


def _scaled(bound: tuple[Decimal, bool] | None, m: int, rounding: str) -> int | None:
    if bound is None:
        return None
    value, exclusive = bound
    scaled = value.scaleb(m, _CTX)
    whole = int(scaled.to_integral_value(rounding=rounding, context=_CTX))
    if exclusive and whole == scaled:
        whole += 1 if rounding == ROUND_CEILING else -1
    return whole


class _Side:
    """Magnitudes v (scaled by 10^m) in [lo, hi] (hi None: unbounded) that p divides."""

    def __init__(self, lo: int, hi: int | None, m: int, p: int, integer: bool):
        self.lo, self.hi, self.m, self.p, self.integer = lo, hi, m, p, integer
        self.zero_fill = [pow(10, k, p) for k in range(m + 1)]
        lo_digits = max(1, len(str(lo // 10**m)))
        self.long = integer and hi is None  # integer parts longer than `lo_digits`: any digits
        if hi is None:
            top = lo_digits if integer else max(MAX_DIGITS, lo_digits)
        else:
            top = len(str(hi // 10**m))
        self.threshold = lo_digits + 1
        self.strings = {}
        for n in range(1, top + 1):
            low = max(lo, 10 ** (n - 1 + m) if n > 1 else 0)
            high = 10 ** (n + m) - 1 if hi is None else min(hi, 10 ** (n + m) - 1)
            if low <= high:
                self.strings[n] = (str(low).zfill(n + m), str(high).zfill(n + m))

    def branches(self) -> frozenset:
        return frozenset({(n, True, True) for n in self.strings} | ({_LONG} if self.long else set()))

    def fraction_limit(self, n: int) -> int:
        return 0 if self.integer else max(0, min(self.m, MAX_DIGITS - n))


class _Stepper:
    """States: ("start",), ("int", side, k, r, branches), ("frac", side, n, j, r, tight_lo, tight_hi)."""

    def __init__(self, sides: dict[str, _Side]):
        self.sides = sides

    def step(self, state: tuple, char: str):
        if state[0] == "start":
            if char == "-":
                return ("int", "-", 0, 0, self.sides["-"].branches()) if "-" in self.sides else None
            if "+" not in self.sides or not char.isdigit():
                return None
            state = ("int", "+", 0, 0, self.sides["+"].branches())
        side = self.sides[state[1]]
        if state[0] == "int":
            return self._int_step(side, state, char)
        _, sign, n, j, r, tl, th = state
        if not char.isdigit() or j >= side.fraction_limit(n):
            return None
        d = char
        lo_s, hi_s = side.strings[n]
        if (tl and d < lo_s[n + j]) or (th and d > hi_s[n + j]):
            return None
        return ("frac", sign, n, j + 1, (r * 10 + int(d)) % side.p, tl and d == lo_s[n + j], th and d == hi_s[n + j])

    def _int_step(self, side: _Side, state: tuple, char: str):
        _, sign, k, r, branches = state
        if char == ".":
            done = [b for b in branches if b != _LONG and b[0] == k and side.fraction_limit(k) > 0]
            return ("frac", sign, k, 0, r, done[0][1], done[0][2]) if done else None
        if not char.isdigit():
            return None
        nxt = set()
        for b in branches:
            if b == _LONG:
                if k > 0 or char != "0":
                    nxt.add(b)
                continue
            n, tl, th = b
            if n <= k:
                continue
            lo_s, hi_s = side.strings[n]
            if (tl and char < lo_s[k]) or (th and char > hi_s[k]):
                continue
            nxt.add((n, tl and char == lo_s[k], th and char == hi_s[k]))
        if not nxt:
            return None
        k = min(k + 1, side.threshold) if _LONG in nxt else k + 1
        return ("int", sign, k, (r * 10 + int(char)) % side.p, frozenset(nxt))

    def accepts(self, state: tuple) -> bool:
        if state[0] == "start":
            return False
        side = self.sides[state[1]]
        if state[0] == "frac":
            _, _, n, j, r, tl, _ = state
            lo_s = side.strings[n][0]
            return j > 0 and (not tl or not lo_s[n + j:].strip("0")) and r * side.zero_fill[side.m - j] % side.p == 0
        _, _, k, r, branches = state
        if r * side.zero_fill[side.m] % side.p:
            return False
        for b in branches:
            if b == _LONG:
                if k >= side.threshold:
                    return True
            elif b[0] == k and (not b[1] or not side.strings[k][0][k:].strip("0")):
                return True
        return False
