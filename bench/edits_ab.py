"""Two revisions of coderapi on the edit tasks of bench/edits.py, paired request by request.

Single runs of bench/edits.py move by 10-15% with this host, more than a scheduling change gains.
Here both revisions serve at once (weight_repack off unless --repack, exact speculation: one server with
`prediction`, one with n-gram drafts only, for each revision), and every task goes to the two
revisions back to back, in alternating order, so a slower spell of the host weighs on both. Only
one request runs at a time. Prints each request, the totals, the speed ratio and whether the two
revisions gave the same answers.

    git worktree add /tmp/before <rev> && ln -s "$PWD/data/models" /tmp/before/data/models
    .venv/bin/python bench/edits_ab.py --before /tmp/before [--rounds 2]

Two llama.cpp builds under the same revision instead: `--before-ggml DIR` preloads DIR's
libggml-base.so.0 and libggml-cpu.so.0 (e.g. unzipped from an older cached wheel's llama_cpp/lib/)
into the "before" servers, and `--before` defaults to this checkout. Two settings under the same
revision: `--before-settings '{"speculation_cost_gate": false}'` (model fields for the "before"
servers); `--repack` runs every server with weight_repack on (the default model's setting).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import ROOT, TASKS, coderapi, request_body  # noqa: E402

MODES = ("prediction", "n-gram")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, default=ROOT, help="a checkout of the other revision")
    parser.add_argument("--before-ggml", type=Path, help="a folder of the other llama.cpp build's ggml libraries")
    parser.add_argument("--before-settings", type=json.loads, default=None, help="model fields, as JSON")
    parser.add_argument("--repack", action="store_true", help="weight_repack on, every server")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": ROOT}
    seconds = {(rev, mode): 0.0 for rev in trees for mode in MODES}
    answers: dict[tuple[str, str], set[str]] = {}
    with ExitStack() as stack:
        clients = {}
        for rev, tree in trees.items():
            for mode in MODES:
                server = coderapi(ngram=mode == "n-gram", exact=True, repack=args.repack, threads=os.cpu_count(),
                                  tree=tree, ggml=args.before_ggml if rev == "before" else None,
                                  settings=args.before_settings if rev == "before" else None)
                base, headers, model = stack.enter_context(server)
                clients[rev, mode] = stack.enter_context(httpx.Client(base_url=base, headers=headers, timeout=900))
        print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
        for r in range(args.rounds):
            for i, name in enumerate(TASKS):
                order = ("before", "after") if (r + i) % 2 == 0 else ("after", "before")
                for mode in MODES:
                    for rev in order:
                        started = time.perf_counter()
                        response = clients[rev, mode].post("/v1/chat/completions",
                                                           json=request_body(model, name, mode == "prediction"))
                        response.raise_for_status()
                        took = time.perf_counter() - started
                        seconds[rev, mode] += took
                        answers.setdefault((name, mode), set()).add(response.json()["choices"][0]["message"]["content"])
                        print(f"  round {r + 1} {name} {mode} {rev}: {took:.1f} s", flush=True)
    for mode in MODES:
        before, after = seconds["before", mode], seconds["after", mode]
        print(f"{mode}: before {before:.1f} s, after {after:.1f} s: after is {before / after:.3f}x as fast")
    print("same answers from both revisions:", all(len(texts) == 1 for texts in answers.values()))


if __name__ == "__main__":
    main()
