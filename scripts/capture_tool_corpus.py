"""Capture raw Qwen2.5-Coder outputs for tool prompts into tests/fixtures/tool_corpus.jsonl.

Each case of scripts/tool_corpus_cases.py is rendered exactly as the server renders it (the
GGUF's own chat template, through coderapi's template code), then generated with llama_cpp.Llama
directly: tool_choice "auto", no grammar, greedy, plus the server's default sampling with a fixed
seed for the cases in SAMPLED. The raw text is stored as is.

Labels (`expected`: the calls a careful reader sees the model making, [] for none) are written
by hand after reading each output; re-running keeps the labels of entries whose raw output did
not change, and marks changed or new ones `expected: null` until they are labelled again.

    .venv/bin/python scripts/capture_tool_corpus.py --models 0.5b 1.5b
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from tool_corpus_cases import CASES, SAMPLED, TOOLS  # noqa: E402

from coderapi.backends.coder.messages import template_messages, template_tools  # noqa: E402
from coderapi.backends.coder.template import ChatTemplate  # noqa: E402
from coderapi.protocol.chat import ChatCompletionRequest  # noqa: E402
from coderapi.weights.packaged import resolve_gguf  # noqa: E402

MODELS = {
    "0.5b": "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m",
    "1.5b": "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m",
}
GREEDY = {"temperature": 0.0}
SAMPLED_PARAMS = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repeat_penalty": 1.05, "seed": 1234}


def render(template: ChatTemplate, case: dict) -> str:
    tools = [TOOLS[name] for name in case["tools"]]
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": case["messages"], "tools": tools}
    )
    return template.render(template_messages(request.messages), tools=template_tools(request.tools))


def generate(llm, prompt: str, sampling: dict, max_tokens: int) -> tuple[str, str]:
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    params = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, **sampling}
    llm.reset()
    out = llm.create_completion(prompt=ids, max_tokens=max_tokens, **params)
    choice = out["choices"][0]
    return choice["text"], choice["finish_reason"]


def load_existing(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["id"]: row for row in rows}


def capture_model(key: str, cache: Path, threads: int, max_tokens: int, existing: dict) -> list[dict]:
    from llama_cpp import Llama

    path = resolve_gguf(MODELS[key], cache)
    llm = Llama(str(path), n_ctx=4096, n_threads=threads or os.cpu_count(), n_batch=512, verbose=False)
    template = ChatTemplate(llm.metadata["tokenizer.chat_template"])
    rows = []
    for case in CASES:
        modes = [("greedy", GREEDY)] + ([("sampled", SAMPLED_PARAMS)] if case["id"] in SAMPLED else [])
        for mode, sampling in modes:
            started = time.monotonic()
            raw, finish = generate(llm, render(template, case), sampling, max_tokens)
            row_id = f"{key}/{case['id']}/{mode}"
            row = {
                "id": row_id, "model": f"qwen2.5-coder-{key}-instruct-q4_k_m", "case": case["id"],
                "sampling": sampling, "tools": case["tools"], "messages": case["messages"],
                "raw": raw, "finish_reason": finish, "expected": None,
            }
            old = existing.get(row_id)
            if old and old["raw"] == raw:  # the same output keeps its hand-written label
                row.update({k: old[k] for k in ("expected", "note") if k in old})
            rows.append(row)
            print(f"{row_id}: {time.monotonic() - started:.1f}s {raw[:70]!r}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "tool_corpus.jsonl")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()
    existing = load_existing(args.out)
    rows = {row_id: row for row_id, row in existing.items()}
    for key in args.models:
        for row in capture_model(key, args.cache, args.threads, args.max_tokens, existing):
            rows[row["id"]] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        for row in rows.values():
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    unlabelled = sum(1 for row in rows.values() if row["expected"] is None)
    print(f"{len(rows)} outputs in {args.out}; {unlabelled} need a label")


if __name__ == "__main__":
    main()
