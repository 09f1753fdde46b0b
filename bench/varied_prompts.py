"""Distinct prompts, as users send them: no two share more than the chat template's header.

`bench/serve_bench.py` also drives every client with one and the same prompt; there the prefix
cache answers every time to first token after the first request. These prompts make each
request prefill its own code: a slice of a standard-library module (10 to 80 lines, about
100 to 900 tokens) with one of several coding tasks. The same index always gives the same prompt.
"""

from __future__ import annotations

import importlib
import inspect

MODULES = ("json.decoder", "csv", "textwrap", "difflib", "fractions", "statistics", "shlex", "heapq",
           "bisect", "calendar", "string", "glob", "fnmatch", "colorsys", "queue", "sched")
TASKS = ("Explain what this code does, step by step.",
         "Add type hints to this code and return the whole code.",
         "Write pytest unit tests for this code.",
         "Find the bugs or edge cases this code misses.",
         "Rewrite this code to be more readable; keep its behaviour.")


def varied_prompt(index: int) -> str:
    module = importlib.import_module(MODULES[index % len(MODULES)])
    lines = inspect.getsource(module).splitlines()
    size = 10 + (index * 37) % 71  # 10..80 lines
    start = (index * 131) % max(1, len(lines) - size)
    code = "\n".join(lines[start : start + size])
    task = TASKS[index % len(TASKS)]
    return f"Request {index}. {task}\n\n```python\n{code}\n```"
