"""Decoding under a grammar: llama.cpp's full sampler chain against coderapi's grammar pickers.

The chain masks the whole vocabulary with the grammar before every pick. Greedy (default): the
picker (src/coderapi/engines/llama_cpp/grammar_greedy.py) asks the grammar about the greedy token
alone and masks the vocabulary only when the grammar refuses it. `--sampled` (Qwen's defaults:
temperature 0.7, top-k 20, top-p 0.8, repetition penalty 1.05, a fixed seed): the picker
(grammar_sampled.py) runs the chain's samplers on a shortlist the grammar filtered, wherever that
provably keeps what the chain keeps. Same tokens, by construction (the last column checks); this
measures the time. Workloads: tool_choice "required" on held-out tool prompts
(tool_call_cases.py, the grammar coderapi builds for them) and json_schema answers. Each
workload decodes up to `--max-tokens` tokens with both samplers, alternating, `--reps` times, on
the embedded 0.5B; the time per token covers the decode step and the pick. "free" is decoding of
the same prompt with the same settings but no grammar (another text, the same cost per step):
the floor. "fast"/"masked all": the picker's steps that skipped the whole-vocabulary mask and
those that took it.

    .venv/bin/python bench/grammar_decode.py [--max-tokens 64] [--reps 2] [--sampled]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import llama_cpp as lc  # noqa: E402

from coderapi.backends.coder.grammars import schema_to_gbnf, tool_call_grammar  # noqa: E402
from coderapi.backends.coder.template import ChatTemplate  # noqa: E402
from coderapi.engines.base import SamplingParams  # noqa: E402
from coderapi.engines.llama_cpp.grammar_greedy import GrammarGreedyPicker  # noqa: E402
from coderapi.engines.llama_cpp.grammar_sampled import GrammarSampledPicker  # noqa: E402
from coderapi.engines.llama_cpp.greedy import GreedyPicker  # noqa: E402
from coderapi.engines.llama_cpp.model import LlamaContext, LlamaModel  # noqa: E402
from coderapi.engines.llama_cpp.sampling import PENALTY_LAST_N, SamplerChain  # noqa: E402
from coderapi.protocol.chat import Tool  # noqa: E402
from tool_call_cases import CASES, TOOLS  # noqa: E402

GGUF = ROOT / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SAMPLING = dict(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.05, seed=1234)
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "languages": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "age", "languages"]}


def workloads(template: ChatTemplate) -> list[tuple[str, str, str]]:
    """(name, prompt, grammar)."""
    out = []
    for case in CASES[:6]:
        tools = [TOOLS[t] for t in case["tools"]]
        grammar = tool_call_grammar([Tool.model_validate(t) for t in tools], "required", False)
        out.append((f"tool {case['id']}", template.render(case["messages"], tools=tools), grammar))
    for ask in ("Describe a fictional Rust developer as JSON.", "Give me a made-up person who codes in Go, as JSON."):
        out.append((f"json {ask[:20]}", template.render([{"role": "user", "content": ask}]),
                    schema_to_gbnf(PERSON, "response_format")))
    return out


def decode(model: LlamaModel, ctx: LlamaContext, prompt: list[int], sampler,
           max_tokens: int) -> tuple[list[int], float, int]:
    """The tokens after `prompt` (up to the end token), the seconds spent past the prompt, and the
    number of picks (the end token's included)."""
    lc.llama_memory_clear(ctx.mem, True)
    arr = (lc.llama_token * len(prompt))(*prompt)
    assert lc.llama_decode(ctx.ptr, lc.llama_batch_get_one(arr, len(prompt))) == 0
    out: list[int] = []
    picks = 0
    started = time.perf_counter()
    while len(out) < max_tokens:
        token = sampler.sample(ctx.ptr, -1)
        picks += 1
        if model.is_eog(token):
            break
        out.append(token)
        one = (lc.llama_token * 1)(token)
        assert lc.llama_decode(ctx.ptr, lc.llama_batch_get_one(one, 1)) == 0
    return out, time.perf_counter() - started, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--sampled", action="store_true", help="Qwen's sampling defaults, seeded, instead of greedy")
    args = parser.parse_args()
    settings = QWEN_SAMPLING if args.sampled else dict(temperature=0.0)
    model = LlamaModel(GGUF)
    template = ChatTemplate(model.metadata()["tokenizer.chat_template"], eos_token="<|im_end|>")
    ctx = LlamaContext(model, n_ctx=2048, n_seq_max=1, n_batch=512, n_threads=os.cpu_count())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {platform.node()} · {os.cpu_count()} cores · {cpu}; "
          f"the 0.5B, {'sampled ' + str(settings) if args.sampled else 'greedy'}, up to {args.max_tokens} tokens\n")
    print(f"{'workload':<30} {'tokens':>6} {'chain ms/tok':>12} {'picker ms/tok':>13} {'free ms/tok':>11} "
          f"{'fast':>5} {'masked all':>10} {'speed-up':>8} same")
    ratios, chain_total, picker_total, free_total, tokens_total = [], 0.0, 0.0, 0.0, 0
    for name, text, grammar in workloads(template):
        prompt = model.tokenize(text, add_special=False)
        params = SamplingParams(max_tokens=args.max_tokens, grammar=grammar, **settings)
        free_params = SamplingParams(max_tokens=args.max_tokens, **settings)
        times = {"chain": [], "picker": [], "free": []}
        outputs, fast, masked = {}, 0, 0
        for _ in range(args.reps):
            for kind in times:  # alternating, so a slower spell of the host hits all three
                if kind == "chain":
                    sampler = SamplerChain(model, params, prompt)
                elif kind == "picker" and args.sampled:
                    sampler = GrammarSampledPicker(model, params, prompt)
                elif kind == "picker":
                    sampler = GrammarGreedyPicker(model.vocab, model.n_vocab, params, prompt, PENALTY_LAST_N)
                elif args.sampled:
                    sampler = SamplerChain(model, free_params, prompt)
                else:
                    sampler = GreedyPicker(model.n_vocab, free_params, prompt, 0)
                limit = len(outputs.get("chain", ())) or args.max_tokens  # free: as many tokens as the chain wrote
                tokens, seconds, picks = decode(model, ctx, prompt, sampler,
                                                limit if kind == "free" else args.max_tokens)
                if kind == "picker":
                    masked = sampler.full_picks if args.sampled else sampler.full_applies
                    fast = picks - masked
                sampler.free()
                times[kind].append(seconds / max(len(tokens), 1))
                outputs[kind] = tokens
        chain_ms, picker_ms, free_ms = (statistics.median(times[k]) * 1e3 for k in ("chain", "picker", "free"))
        n = len(outputs["chain"])
        ratios.append(chain_ms / picker_ms)
        chain_total += chain_ms * n
        picker_total += picker_ms * n
        tokens_total += n
        same = "yes" if outputs["chain"] == outputs["picker"] else "NO"
        free_total += free_ms * n
        print(f"{name:<30} {n:>6} {chain_ms:>12.1f} {picker_ms:>13.1f} {free_ms:>11.1f} {fast:>5} {masked:>10} "
              f"{chain_ms / picker_ms:>7.2f}x {same}")
    print(f"\nall workloads: {tokens_total} tokens, chain {chain_total / tokens_total:.1f} ms/token, "
          f"picker {picker_total / tokens_total:.1f} ms/token: {chain_total / picker_total:.2f}x "
          f"(median of workloads {statistics.median(ratios):.2f}x); "
          f"free decoding {free_total / tokens_total:.1f} ms/token")
    ctx.free()
    model.free()


if __name__ == "__main__":
    main()
