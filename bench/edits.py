"""Edit benchmark: "rename this function, return the whole file" on small standard-library modules.

Greedy chat completions, one request at a time, every task on every configuration in one run:

- coderapi plain (no n-gram drafts, no prediction): the reference answers;
- coderapi with `prediction` (the original file), exact mode (greedy answers bit-identical);
- coderapi with `prediction`, fast mode (`speculation_exact` off: longer drafts);
- coderapi n-gram only (no prediction), exact and fast modes;
- llama-server plain, `--spec-type ngram-simple` and `--spec-type ngram-mod` (the vendored build);
- with --no-repack: coderapi plain, with `prediction` (exact) and n-gram only (exact) with
  `weight_repack` off (which also turns ggml's tiled K-quant matmul off: exact steps up to 65 rows).

Checks each coderapi answer against coderapi plain (and each llama-server answer against
llama-server plain), reports accepted/refused prediction tokens, total time, the time to each answer's
first token (streamed requests: the prompts' evaluation, which no drafting shortens) and ratios, and writes
docs/edits-bench.md and docs/edits-bench.png (matplotlib, when installed).

    .venv/bin/python bench/edits.py [--llama-server PATH] [--tasks colorsys,bisect,genericpath]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
import servers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
TASKS = ("colorsys", "bisect", "genericpath")  # standard-library modules: the same files on every machine
RENAMES = {  # module: (old function name, new one)
    "colorsys": ("rgb_to_hls", "rgb_to_hls_color"),
    "bisect": ("insort_right", "insort_after"),
    "genericpath": ("commonprefix", "common_prefix"),
    "reprlib": ("recursive_repr", "recursion_guard"),
}


def task(module: str) -> tuple[str, str]:
    """(the user message, the prediction: the file as it is, fenced as the answer will be)."""
    source = inspect.getsource(importlib.import_module(module))
    old, new = RENAMES[module]
    fenced = f"```python\n{source}```"
    ask = f"Rename the function `{old}` to `{new}` (and its uses). Return the whole file, nothing else.\n\n{fenced}"
    return ask, fenced


def request_body(model: str, name: str, with_prediction: bool) -> dict:
    """The greedy chat request of one task, with the file as `prediction` or without."""
    ask, prediction = task(name)
    body = {"model": model, "messages": [{"role": "user", "content": ask}], "temperature": 0, "max_tokens": 2048}
    if with_prediction:
        body["prediction"] = {"type": "content", "content": prediction}
    return body


@contextmanager
def coderapi(ngram: bool, exact: bool, repack: bool = True, threads: int | None = None, tree: Path = ROOT,
             ggml: Path | None = None, settings: dict | None = None):
    """A coderapi server on the 0.5B; `tree`: the checkout whose src/ it runs, `ggml`: a folder whose
    libggml-base.so.0 and libggml-cpu.so.0 it preloads instead of the installed ones, `settings`: more
    of the model's fields (bench/edits_ab.py)."""
    port = servers.free_port()
    data_dir = tempfile.mkdtemp(prefix="coderapi-edits-")
    model = {"id": MODEL_ID, "context_length": 4096, "n_parallel": 2, "speculation_ngram": ngram,
             "speculation_exact": exact, "weight_repack": repack, "n_threads": threads, **(settings or {})}
    env = {**os.environ, "CODERAPI_DATA_DIR": data_dir, "CODERAPI_MODEL_CACHE_DIR": str(GGUF.parent),
           "CODERAPI_MODELS": json.dumps([model])}
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree / "src")
    if ggml is not None:
        env["LD_PRELOAD"] = " ".join(str((ggml / lib).resolve()) for lib in ("libggml-base.so.0", "libggml-cpu.so.0"))
    proc = subprocess.Popen([sys.executable, "-m", "coderapi", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tree)
    try:
        key = servers.bootstrap_key(proc)
        base = f"http://127.0.0.1:{port}"
        servers._wait_ready(proc, f"{base}/health")
        yield base, {"Authorization": f"Bearer {key}"}, MODEL_ID
    finally:
        servers._stop(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def llama_server(binary: str, spec_type: str | None, threads: int):
    port = servers.free_port()
    cmd = [binary, "-m", str(GGUF), "-np", "2", "-c", "8192", "-t", str(threads), "--host", "127.0.0.1",
           "--port", str(port)]
    if spec_type:
        cmd += ["--spec-type", spec_type]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        servers._wait_ready(proc, f"{base}/health")
        yield base, {}, "default"
    finally:
        servers._stop(proc)


def run_config(launch, tasks: list[str], with_prediction: bool) -> list[dict]:
    rows = []
    with launch as (base, headers, model):
        with httpx.Client(base_url=base, headers=headers, timeout=900) as client:
            warm = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
            client.post("/v1/chat/completions", json=warm).raise_for_status()
        for name in tasks:
            rows.append({"task": name, **streamed(base, headers, request_body(model, name, with_prediction))})
            print(f"    {name}: {rows[-1]['seconds']:.1f} s (first token {rows[-1]['first_token_s']:.1f} s), "
                  f"{rows[-1]['completion_tokens']} tokens, accepted {rows[-1]['accepted']}, "
                  f"refused {rows[-1]['rejected']}", flush=True)
    return rows


def streamed(base: str, headers: dict, body: dict) -> dict:
    """One streamed request (loadgen's reader): its text, usage, whole time and time to the first content
    (the prompt's evaluation, which no drafting shortens). A client of its own: llama-server drops a
    kept-alive connection after a long stream."""

    async def send() -> loadgen.Result:
        async with httpx.AsyncClient(headers=headers, timeout=900) as client:
            return await loadgen.one_request(client, f"{base}/v1/chat/completions",
                                             {**body, "stream": True, "stream_options": {"include_usage": True}})

    result = asyncio.run(send())
    if not result.ok:
        raise RuntimeError(f"edit request failed: {result.error}")
    details = result.usage.get("completion_tokens_details") or {}
    completion, rejected = result.usage.get("completion_tokens", 0), details.get("rejected_prediction_tokens", 0)
    return {"seconds": result.e2e, "first_token_s": result.ttft, "text": result.text,
            "completion_tokens": completion, "answer_tokens": completion - rejected,
            "accepted": details.get("accepted_prediction_tokens", 0), "rejected": rejected}


def configs(args) -> list[tuple[str, str, object, bool]]:
    """(name, reference config name, launcher, send prediction)."""
    out = [
        ("coderapi plain", "coderapi plain", coderapi(ngram=False, exact=True, threads=args.threads), False),
        ("coderapi prediction (exact)", "coderapi plain", coderapi(ngram=False, exact=True, threads=args.threads), True),
        ("coderapi prediction (fast)", "coderapi plain", coderapi(ngram=False, exact=False, threads=args.threads), True),
        ("coderapi n-gram only (exact)", "coderapi plain", coderapi(ngram=True, exact=True, threads=args.threads), False),
        ("coderapi n-gram only (fast)", "coderapi plain", coderapi(ngram=True, exact=False, threads=args.threads), False),
    ]
    if args.no_repack:  # weight repacking off: exact speculation may verify 63 drafts a step, not 2
        plain = "coderapi plain (no repack)"
        out += [
            (plain, plain, coderapi(ngram=False, exact=True, repack=False, threads=args.threads), False),
            ("coderapi prediction (exact, no repack)", plain, coderapi(ngram=False, exact=True, repack=False, threads=args.threads), True),
            ("coderapi n-gram only (exact, no repack)", plain, coderapi(ngram=True, exact=True, repack=False, threads=args.threads), False),
        ]
    if args.llama_server:
        ls = "llama-server plain"
        out += [
            (ls, ls, llama_server(args.llama_server, None, args.threads), False),
            ("llama-server ngram-simple", ls, llama_server(args.llama_server, "ngram-simple", args.threads), False),
            ("llama-server ngram-mod", ls, llama_server(args.llama_server, "ngram-mod", args.threads), False),
        ]
    return out


def equal_length_seconds(row: dict, reference_tokens: int) -> float:
    """The row's time had its answer been `reference_tokens` long: the prompt's time as measured, the
    rest scaled by length. Each server's greedy answers are its own (their sums differ in the last
    bits), and one can be hundreds of tokens longer than the other's for the same task."""
    decode = row["seconds"] - row["first_token_s"]
    return row["first_token_s"] + decode * reference_tokens / max(row["answer_tokens"], 1)


def summarize(results: dict[str, list[dict]]) -> list[dict]:
    """Totals per config; the ratios compare equal-length times (answers as long as coderapi plain's)."""
    plain = next((name for name in results if name.startswith("coderapi plain")), next(iter(results)))
    reference = {r["task"]: r["answer_tokens"] for r in results[plain]}
    equal = {name: sum(equal_length_seconds(r, reference.get(r["task"], r["answer_tokens"])) for r in rows)
             for name, rows in results.items()}
    base = equal[plain]
    ls_base = equal.get("llama-server plain")
    ls_best = min((t for name, t in equal.items() if name.startswith("llama-server")), default=None)
    table = []
    for name, rows in results.items():
        total = equal[name]
        table.append({"config": name, "total_s": sum(r["seconds"] for r in rows),
                      "first_token_s": sum(r["first_token_s"] for r in rows),
                      "answer_tokens": sum(r["answer_tokens"] for r in rows), "equal_length_s": total,
                      "identical": sum(r["identical"] for r in rows),
                      "tasks": len(rows), "accepted": sum(r["accepted"] for r in rows),
                      "rejected": sum(r["rejected"] for r in rows),
                      "vs_coderapi_plain": base / total, "vs_llama_server_plain": (ls_base / total) if ls_base else None,
                      "vs_llama_server_best": (ls_best / total) if ls_best else None})
    return table


def write_report(table: list[dict], machine: dict, args) -> None:
    lines = ["# Edit benchmark (bench/edits.py)", "",
             "“Rename this function, return the whole file” on standard-library modules "
             f"({', '.join(args.tasks)}), greedy, one request at a time. Identical: answers equal to the same "
             "server's plain answer.", ""]
    lines += [f"- {k}: {v}" for k, v in machine.items()] + [""]
    lines += ["Equal-length s: the time to the first token plus the rest scaled to the length of coderapi plain's "
              "answer to the same task (each server's greedy answers are its own); the ratios compare these.", ""]
    lines += ["| config | total s | to first token s | answer tokens | equal-length s | identical | "
              "accepted / refused prediction | × coderapi plain | × llama-server plain | × llama-server best |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda x: "—" if x is None else f"{x:.2f}×"  # noqa: E731
    for row in table:
        lines.append(f"| {row['config']} | {row['total_s']:.1f} | {row['first_token_s']:.1f} | "
                     f"{row['answer_tokens']} | {row['equal_length_s']:.1f} | {row['identical']}/{row['tasks']} | "
                     f"{row['accepted']} / {row['rejected']} | {fmt(row['vs_coderapi_plain'])} | "
                     f"{fmt(row['vs_llama_server_plain'])} | {fmt(row['vs_llama_server_best'])} |")
    out = Path(args.report)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh([r["config"] for r in table], [r["total_s"] for r in table])
    ax.set_xlabel("total seconds (lower is better)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-server", default=None, help="llama-server binary (scripts/build_llama.sh server)")
    parser.add_argument("--tasks", default=",".join(TASKS), type=lambda s: s.split(","))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp threads, every server")
    parser.add_argument("--only", action="append", default=None,
                        help="a config name to run (repeat for several; default: all)")
    parser.add_argument("--no-repack", action="store_true", help="also coderapi with weight_repack off")
    parser.add_argument("--report", default=str(ROOT / "docs" / "edits-bench.md"), help="markdown out (plot: .png)")
    args = parser.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    machine = {"date (UTC)": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
               "CPU": f"{cpu}, {os.cpu_count()} cores",
               "load average at start": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
               "model": GGUF.name}
    results: dict[str, list[dict]] = {}
    chosen = configs(args)
    if args.only:  # the chosen configs and the plain ones they are checked against
        names = set(args.only)
        names |= {reference for name, reference, _, _ in chosen if name in names}
        chosen = [c for c in chosen if c[0] in names]
    for name, reference, launch, with_prediction in chosen:
        print(f"{name} ...", flush=True)
        rows = run_config(launch, args.tasks, with_prediction)
        ref = results.get(reference, rows)
        for row, base in zip(rows, ref):
            row["identical"] = row["text"] == base["text"]
        results[name] = rows
    machine["load average at end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    write_report(summarize(results), machine, args)


if __name__ == "__main__":
    main()
