"""Two revisions of coderapi on the edit tasks of bench/edits.py, paired request by request.

Single runs of bench/edits.py move by 10-15% with this host, more than a scheduling change gains.
Here both revisions serve at once (weight_repack off, exact speculation: one server with
`prediction`, one with n-gram drafts only, for each revision), and every task goes to the two
revisions back to back, in alternating order, so a slower spell of the host weighs on both. Only
one request runs at a time. Prints each request, the totals, the speed ratio and whether the two
revisions gave the same answers.

    git worktree add /tmp/before <rev> && ln -s "$PWD/data/models" /tmp/before/data/models
    .venv/bin/python bench/edits_ab.py --before /tmp/before [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import servers  # noqa: E402
from edits import GGUF, MODEL_ID, ROOT, task  # noqa: E402

TASKS = ("colorsys", "bisect", "genericpath")


def launch(tree: Path, ngram: bool) -> tuple[subprocess.Popen, httpx.Client]:
    port = servers.free_port()
    model = {"id": MODEL_ID, "context_length": 4096, "n_parallel": 2, "speculation_ngram": ngram,
             "speculation_exact": True, "weight_repack": False, "n_threads": os.cpu_count()}
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "CODERAPI_DATA_DIR": tempfile.mkdtemp(prefix="coderapi-ab-"),
           "CODERAPI_MODEL_CACHE_DIR": str(GGUF.parent), "CODERAPI_MODELS": json.dumps([model])}
    proc = subprocess.Popen([sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tree)
    key = proc.stdout.readline().strip()
    servers._wait_ready(proc, f"http://127.0.0.1:{port}/health")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=900)
    return proc, client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the other revision")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": ROOT}
    procs, clients = [], {}
    seconds = {(rev, mode): 0.0 for rev in trees for mode in ("prediction", "n-gram")}
    answers: dict[tuple[str, str], set[str]] = {}
    try:
        for rev, tree in trees.items():
            for mode in ("prediction", "n-gram"):
                proc, clients[rev, mode] = launch(tree, ngram=mode == "n-gram")
                procs.append(proc)
        print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
        for r in range(args.rounds):
            for i, name in enumerate(TASKS):
                ask, prediction = task(name)
                order = ("before", "after") if (r + i) % 2 == 0 else ("after", "before")
                for mode in ("prediction", "n-gram"):
                    for rev in order:
                        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": ask}],
                                "temperature": 0, "max_tokens": 2048}
                        if mode == "prediction":
                            body["prediction"] = {"type": "content", "content": prediction}
                        started = time.perf_counter()
                        response = clients[rev, mode].post("/v1/chat/completions", json=body)
                        response.raise_for_status()
                        took = time.perf_counter() - started
                        seconds[rev, mode] += took
                        answers.setdefault((name, mode), set()).add(response.json()["choices"][0]["message"]["content"])
                        print(f"  round {r + 1} {name} {mode} {rev}: {took:.1f} s", flush=True)
    finally:
        for proc in procs:
            servers._stop(proc)
    for mode in ("prediction", "n-gram"):
        before, after = seconds["before", mode], seconds["after", mode]
        print(f"{mode}: before {before:.1f} s, after {after:.1f} s: after is {before / after:.3f}x as fast")
    print("same answers from both revisions:", all(len(texts) == 1 for texts in answers.values()))


if __name__ == "__main__":
    main()
