"""JSON carried as text: a tool call's `arguments` string in a request, and the calls a model writes.

Python's `json.loads` fails on such text in ways its callers do not expect: past ~1,000 nested
arrays it raises RecursionError, on an integer of more than 4,300 digits a bare ValueError (neither
is a JSONDecodeError), and it reads what no answer can carry back: a lone surrogate escape
(`"\\ud800"`, which UTF-8 cannot encode), `NaN`, and a number past a double's range (`1e400` is
inf, which `json.dumps` writes as the non-JSON `Infinity`). A model can be led to write any of
these, and a client can send them, so every such text is read by `parse_json_text`, which refuses
them all with one error type.
"""

from __future__ import annotations

import math
from typing import Any

import pydantic_core


class JsonTextError(ValueError):
    """The text is not JSON that can be read and written back as JSON."""


def parse_json_text(text: str | bytes) -> Any:
    """The value of `text`; JsonTextError when it is not JSON, nests deeper than jiter's limit
    (200), has an integer of more than 4,300 digits, a lone surrogate, or a non-finite number."""
    try:
        value = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise JsonTextError(str(exc)) from None
    # jiter reads 1e400 as inf even with allow_inf_nan off, so the value is walked for it: 0.2 s for
    # a million floats (4 MB), about what writing the value into a prompt again costs. (A regex for
    # the overflowing numbers themselves backtracks: 1 s on 4 MB of 299-digit runs.)
    if not _finite(value):
        raise JsonTextError("a number beyond the range of a double")
    return value


def _finite(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                return False
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return True
