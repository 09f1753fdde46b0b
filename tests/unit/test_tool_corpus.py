"""The parser over raw outputs captured from the real Qwen2.5-Coder GGUFs (tests/fixtures/tool_corpus.jsonl).

The corpus comes from scripts/capture_tool_corpus.py (tool_choice "auto", no grammar; greedy and
sampled). Each output is labelled by hand with the calls a careful reader sees in it:
- a JSON object naming an offered function, in any wrapper, is a call; its arguments are
  labelled as written, even when they do not fit the function's schema (the parser extracts,
  it does not judge; `required` and named choices get schema-valid calls from the grammar);
- a function name that was not offered is no call (the API must not return it);
- when the JSON is broken but the intent is plain (e.g. one object repeating a key for three
  calls), the label is the intent, so such outputs count against the parser.

Run with `-s` to see the extraction rate by model and by form.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from coderapi.backends.coder.tool_calls import parse_tool_calls
from coderapi.backends.coder.tool_stream import CallArguments, CallStart, ContentText, ToolCallStream

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "tool_corpus.jsonl"
_FENCED_JSON = re.compile(r"```[a-zA-Z_]*\s*\n\s*[\[{]")
_BARE_JSON = re.compile(r"^\s*[\[{]", re.MULTILINE)


def rows() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def form(raw: str) -> str:
    if "<tool_call>" in raw:
        return "tagged"
    if _FENCED_JSON.search(raw):
        return "fenced"
    if _BARE_JSON.search(_FENCED_JSON.sub("", raw)):
        return "bare"
    return "none"


def extracted(row: dict) -> list[dict]:
    parsed = parse_tool_calls(row["raw"], set(row["tools"]))
    return [{"name": c.name, "arguments": json.loads(c.arguments)} for c in parsed.calls]


def test_corpus_is_large_labelled_and_from_both_models():
    corpus = rows()
    assert len(corpus) >= 40
    assert {r["model"] for r in corpus} >= {"qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m"}
    assert [r["id"] for r in corpus if r["expected"] is None] == []


def test_parser_extracts_at_least_95_percent_exactly():
    tally: Counter = Counter()
    misses = []
    for row in rows():
        ok = extracted(row) == row["expected"]
        for key in (("all",), ("model", row["model"]), ("form", form(row["raw"])),
                    ("model+form", row["model"], form(row["raw"]))):
            tally[key + ("ok",)] += ok
            tally[key + ("n",)] += 1
        if not ok:
            misses.append((row["id"], row.get("note", "")))
    print("\ntool-call extraction over the corpus:")
    for key in sorted({k[:-1] for k in tally}):
        print(f"  {' / '.join(key):55} {tally[key + ('ok',)]:3}/{tally[key + ('n',)]:<3}"
              f" = {tally[key + ('ok',)] / tally[key + ('n',)]:.1%}")
    for miss in misses:
        print("  miss:", *miss)
    rate = tally["all", "ok"] / tally["all", "n"]
    assert rate >= 0.95, misses


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["id"])
def test_streaming_agrees_with_the_whole_parse_and_content_has_no_markup(row):
    names = set(row["tools"])
    whole = parse_tool_calls(row["raw"], names)
    for size in (1, 3, 7):  # pieces of about a token, and smaller and larger ones
        stream = ToolCallStream(names)
        events = []
        for start in range(0, len(row["raw"]), size):
            events += stream.feed(row["raw"][start : start + size])
        events += stream.finish()
        content = "".join(e.text for e in events if isinstance(e, ContentText))
        starts = [(e.index, e.name) for e in events if isinstance(e, CallStart)]
        arguments: dict[int, str] = {index: "" for index, _ in starts}
        for event in events:
            if isinstance(event, CallArguments):
                arguments[event.index] += event.fragment
        assert starts == [(i, c.name) for i, c in enumerate(whole.calls)]
        assert [arguments[i] for i, _ in starts] == [c.arguments for c in whole.calls]
        assert content == (whole.content or "")
        if whole.calls:  # no markup of a call, and no call's JSON, is ever content
            assert not any(mark in content for mark in ("<tool_call>", "</tool_call>", '"arguments"'))
            assert "```json" not in content or form(row["raw"]) != "fenced"
