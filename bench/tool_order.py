"""Does the model choose a function by what it does, or by where it is listed? A probe of the
model, outside the product, on the 20 held-out tool prompts (bench/tool_call_cases.py).

For each case the model first answers greedily with the tools in the case's order. When that
answer starts a call (`"name": "` appears), the opener it wrote is kept, and for every cyclic
rotation of the offered tools the prompt is rendered again (the GGUF's own chat template) and
P(name | prompt, opener) is read from the model's logits for each offered name. Printed:
- the name ranked first under each rotation, and how often that is the first-listed tool;
- the choice with the case's order; the order-free choice (the probabilities averaged over the
  rotations, the permutation debiasing of multiple-choice studies); and the calibrated choice
  (each name's probability divided by its probability when the user's message is content-free,
  "N/A", "" or "[MASK]", averaged: the contextual calibration of Zhao et al., 2021).
Names are scored without their closing quote: the model writes `",` as one token.

    .venv/bin/python bench/tool_order.py [--size 0.5b|1.5b] [--cases id,id] [--threads 2]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import tool_call_cases  # noqa: E402
from tool_calls import MODEL_CACHE, SIZES, machine  # noqa: E402

CALL_NAME = re.compile(r'"name"\s*:\s*"')
CONTENT_FREE = ("N/A", "", "[MASK]")


class ModelProbe:
    """The GGUF in llama-cpp-python with every row's logits kept, and its chat template."""

    def __init__(self, gguf: Path, threads: int) -> None:
        from llama_cpp import Llama

        from coderapi.backends.coder.template import ChatTemplate

        self.llm = Llama(str(gguf), n_ctx=4096, n_threads=threads, logits_all=True, verbose=False)
        self.template = ChatTemplate(self.llm.metadata["tokenizer.chat_template"], eos_token="<|im_end|>")

    def prompt(self, case: dict, order: list[str]) -> str:
        return self.template.render(case["messages"], tools=[tool_call_cases.TOOLS[name] for name in order])

    def _tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def _last_log_probs(self) -> np.ndarray:
        row = np.asarray(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float64)
        row -= row.max()
        return row - np.log(np.exp(row).sum())

    def greedy(self, prompt: str, max_tokens: int) -> str:
        self.llm.reset()
        self.llm.eval(self._tokens(prompt))
        out: list[int] = []
        for _ in range(max_tokens):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if token == self.llm.token_eos():
                break
            out.append(token)
            self.llm.eval([token])
        return self.llm.detokenize(out).decode(errors="replace")

    def probability(self, prefix: str, continuation: str) -> float:
        """P(continuation | prefix), token by token, the continuation tokenized after the prefix."""
        head = self._tokens(prefix)
        tail = self._tokens(prefix + continuation)[len(head):]
        self.llm.reset()
        self.llm.eval(head)
        total = 0.0
        for token in tail:
            total += self._last_log_probs()[token]
            self.llm.eval([token])
        return float(np.exp(total))


def probe_case(model: ModelProbe, case: dict) -> dict:
    names = case["tools"]
    answer = model.greedy(model.prompt(case, names), 40)
    opened = CALL_NAME.search(answer)
    if opened is None:
        return {"id": case["id"], "expected": case["expected"], "prose": answer[:60]}
    opener = answer[: opened.end()]
    rotations = [names[i:] + names[:i] for i in range(len(names))]
    table = [{name: model.probability(model.prompt(case, order) + opener, name) for name in names}
             for order in rotations]
    averaged = {name: float(np.mean([row[name] for row in table])) for name in names}
    system = [message for message in case["messages"] if message["role"] == "system"]
    prior = {name: 0.0 for name in names}
    for text in CONTENT_FREE:
        free = model.prompt({"messages": system + [{"role": "user", "content": text}]}, names)
        for name in names:
            prior[name] += model.probability(free + opener, name) / len(CONTENT_FREE)
    calibrated = {name: table[0][name] / max(prior[name], 1e-12) for name in names}
    return {"id": case["id"], "expected": case["expected"], "rotations": rotations, "table": table,
            "as_listed": max(table[0], key=table[0].get), "order_free": max(averaged, key=averaged.get),
            "calibrated": max(calibrated, key=calibrated.get)}


def report(results: list[dict], size: str) -> None:
    print(f"Function choice against tool order, Qwen2.5-Coder-{size.upper()}-Instruct q4_k_m, greedy opener, "
          f"held-out prompts\nmachine: {machine()}\n")
    first_wins = rotations = as_listed = order_free = calibrated = calls = 0
    for result in results:
        if "prose" in result:
            print(f"{result['id']:<14} no call: {result['prose']!r}")
            continue
        calls += 1
        as_listed += result["as_listed"] == result["expected"]
        order_free += result["order_free"] == result["expected"]
        calibrated += result["calibrated"] == result["expected"]
        print(f"{result['id']:<14} expected {result['expected']:<17} as listed {result['as_listed']:<17} "
              f"order-free {result['order_free']:<17} calibrated {result['calibrated']}")
        if len(result["rotations"]) < 2:
            continue
        for order, row in zip(result["rotations"], result["table"]):
            top = max(row, key=row.get)
            first_wins += top == order[0]
            rotations += 1
            cells = "  ".join(f"{name} {p:.3f}" for name, p in row.items())
            print(f"    listed first: {order[0]:<19} top: {top:<19} {cells}")
    print(f"\ncases answered with a call: {calls}/{len(results)}")
    print(f"right function, tools as listed: {as_listed}/{len(results)}; order-free (averaged): {order_free}/{len(results)}; "
          f"calibrated: {calibrated}/{len(results)}")
    print(f"rotations (cases with 2+ tools) where the top name is the first-listed tool: {first_wins}/{rotations}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    parser.add_argument("--cases", default="", help="comma-separated case ids (default: all 20)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from coderapi.weights.packaged import resolve_gguf

    gguf = Path(resolve_gguf(SIZES[args.size][1], MODEL_CACHE))
    wanted = set(args.cases.split(",")) if args.cases else None
    cases = [case for case in tool_call_cases.CASES if wanted is None or case["id"] in wanted]
    model = ModelProbe(gguf, args.threads)
    results = []
    for case in cases:
        results.append(probe_case(model, case))
        print(f"  probed {case['id']}", file=sys.stderr, flush=True)
    report(results, args.size)


if __name__ == "__main__":
    main()
