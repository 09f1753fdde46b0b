"""docs/benchmarks.md and docs/benchmarks-plot.png from one run's numbers."""

from __future__ import annotations

from pathlib import Path


def _f(v, digits=2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def sweep_table(rows: list[dict]) -> list[str]:
    out = ["| clients | requests | errors | out tok (mean) | aggregate tok/s | lone decode tok/s | TTFT p50/p90/p99 s"
           " | TPOT p50/p90/p99 ms | ITL p50/p90/p99 ms | e2e p50/p90/p99 s |",
           "|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        ms = lambda k: "/".join(_f(None if r[f"{k}_p{q}"] is None else r[f"{k}_p{q}"] * 1000, 0) for q in (50, 90, 99))
        s = lambda k: "/".join(_f(r[f"{k}_p{q}"]) for q in (50, 90, 99))
        decode = _f(r["decode_tok_s"], 1) if r["concurrency"] == 1 else ""
        out.append(f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['output_tokens_mean']:.0f} | "
                   f"{r['agg_tok_s']:.1f} | {decode} | {s('ttft')} | {ms('tpot')} | {ms('itl')} | {s('e2e')} |")
    return out


def ratio_table(sweeps: dict[str, list[dict]], top: int) -> list[str]:
    def at(name, c):
        return next((r for r in sweeps.get(name, []) if r["concurrency"] == c), None)

    ours_top, ours_one = at("coderapi", top), at("coderapi", 1)
    out = ["| measure | coderapi | vs llama-server | target | vs llama-cpp-python server | target |",
           "|---|---:|---:|---:|---:|---:|"]
    specs = [(f"aggregate tok/s, {top} clients", ours_top, top, "agg_tok_s", "≥ 1.0×", "≥ 2.5×"),
             (f"TTFT p50, {top} clients (lower is better)", ours_top, top, "ttft_p50", "≤ 1.0×", ""),
             ("decode tok/s, lone client", ours_one, 1, "decode_tok_s", "≥ 1.0×", "")]
    for label, ours, c, key, t1, t2 in specs:
        if ours is None:
            continue
        cells = []
        for other in ("llama-server", "llama-cpp-python server"):
            theirs = at(other, c)
            ok = theirs and theirs[key] and ours[key] is not None
            cells.append(f"{ours[key] / theirs[key]:.2f}× ({_f(theirs[key])})" if ok else "not run")
        out.append(f"| {label} | {_f(ours[key])} | {cells[0]} | {t1} | {cells[1]} | {t2} |")
    return out


def headline_table(headlines: dict[str, list[dict]], top: int) -> list[str]:
    """Ratios of medians over the interleaved repeats, then every repeat's values."""
    import statistics

    def med(name, key):
        values = [h[key] for h in headlines.get(name, []) if h.get(key) is not None]
        return statistics.median(values) if values else None

    out = ["| measure | coderapi | vs llama-server | target | vs llama-cpp-python server | target |",
           "|---|---:|---:|---:|---:|---:|"]
    specs = [(f"aggregate tok/s, {top} clients, one shared prompt", "agg_tok_s", "≥ 1.0×", "≥ 2.5×"),
             (f"TTFT p50, {top} clients, one shared prompt (s, lower is better)", "ttft_p50", "≤ 1.0×", ""),
             (f"aggregate tok/s, {top} clients, varied prompts", "agg_tok_s_varied", "≥ 1.0×", ""),
             (f"TTFT p50, {top} clients, varied prompts (s, lower is better)", "ttft_p50_varied", "≤ 1.0×", ""),
             ("decode tok/s, lone client", "decode_tok_s", "≥ 1.0×", "")]
    for label, key, t1, t2 in specs:
        ours = med("coderapi", key)
        cells = []
        for other in ("llama-server", "llama-cpp-python server"):
            theirs = med(other, key)
            cells.append(f"{ours / theirs:.3f}× ({_f(theirs)})" if ours and theirs else "not run")
        out.append(f"| {label} | {_f(ours)} | {cells[0]} | {t1} | {cells[1]} | {t2} |")
    variant = "coderapi (no repack)"
    if headlines.get(variant) and headlines.get("llama-server"):
        ratios = [f"{label.split(' (')[0]} {med(variant, key) / med('llama-server', key):.3f}×"
                  for label, key, *_ in specs if med(variant, key) and med("llama-server", key)]
        out += ["", f"{variant} vs llama-server (medians): " + "; ".join(ratios)]
    out += ["", "Each repeat (aggregate tok/s · TTFT p50 s, shared prompt | varied prompts · lone decode tok/s):", ""]
    for name, reps in headlines.items():
        cells = ", ".join(f"{h['agg_tok_s']:.1f} · {_f(h['ttft_p50'])} | {_f(h.get('agg_tok_s_varied'), 1)} · "
                          f"{_f(h.get('ttft_p50_varied'))} · {_f(h['decode_tok_s'], 1)}" for h in reps)
        out.append(f"- {name}: {cells}")
    return out


def plot(sweeps: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rows in sweeps.items():
        xs = [r["concurrency"] for r in rows]
        a.plot(xs, [r["agg_tok_s"] for r in rows], marker="o", label=name)
        b.plot(xs, [r["ttft_p50"] or 0 for r in rows], marker="o", label=name)
    a.set(title="Aggregate output tokens/s", xlabel="concurrent clients", ylabel="tokens/s")
    b.set(title="TTFT p50", xlabel="concurrent clients", ylabel="seconds", yscale="log")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Qwen2.5-Coder-0.5B Q4_K_M, streamed chat, greedy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(path: Path, meta: dict, sweeps: dict, prefix: dict | None, soak: dict | None, metrics: list | None,
          headlines: dict | None = None) -> None:
    top = max(meta["concurrency"])
    lines = ["# Benchmarks", "",
             "Written by `bench/serve_bench.py` from one run; every ratio below was measured side by side in that run,",
             "one server at a time on the same GGUF, on the same machine.", "",
             "## Machine and run", ""]
    lines += [f"- {k}: {v}" for k, v in meta["info"].items()]
    if headlines and any(headlines.values()):
        reps = max(len(v) for v in headlines.values())
        lines += ["", "## Ratios (coderapi / other server)", "",
                  f"Medians of {reps} interleaved repeats: each repeat starts every server afresh, one after the"
                  f" other, and measures a lone client ({meta.get('rounds', 2)} requests) and {top} clients, first all with one"
                  f" shared prompt, then each request with its own (bench/varied_prompts.py).", "",
                  *headline_table(headlines, top), ""]
        lines += ["## Ratios from the sweep below (one pass per server)", "", *ratio_table(sweeps, top), ""]
    else:
        lines += ["", "## Ratios (coderapi / other server)", "", *ratio_table(sweeps, top), ""]
    lines += ["Cells show the ratio and, in brackets, the other server's value. Lone-client decode tok/s is"
              " (output tokens − 1) / (end − first token), the client-side view of decode speed.", ""]
    lines += ["![throughput and TTFT against concurrency](benchmarks-plot.png)", ""]
    for name, rows in sweeps.items():
        lines += [f"## {name}", "", *sweep_table(rows), ""]
        errs = sorted({e for r in rows for e in r["error_samples"]})
        if errs:
            lines += ["Errors: " + "; ".join(f"`{e}`" for e in errs), ""]
    if prefix:
        f, s = prefix["first"], prefix["second"]
        lines += ["## Prefix cache (coderapi)", "",
                  "Two streamed requests sharing a ~2,000-token system prompt of code, different questions.", "",
                  "| request | TTFT s | prompt tokens | cached tokens |", "|---|---:|---:|---:|",
                  f"| first | {_f(f['ttft'], 3)} | {f['prompt_tokens']} | {f['cached_tokens']} |",
                  f"| second | {_f(s['ttft'], 3)} | {s['prompt_tokens']} | {s['cached_tokens']} |", "",
                  f"Second / first TTFT: **{_f(100 * prefix.get('ratio', 0), 1)}%** (target ≤ 20%).", ""]
    if soak:
        lines += ["## Soak (coderapi)", "",
                  f"{soak['requests']} streamed requests ({soak['concurrency']} clients, 16 output tokens) after a warm-up;"
                  f" {soak['wall_s']:.0f} s.", "",
                  f"- failed requests: **{soak['failed']}** {soak['errors'] or ''}",
                  f"- server VmRSS after warm-up: {soak['rss_before_kib'] / 1024:.1f} MiB;"
                  f" after the soak: {soak['rss_after_kib'] / 1024:.1f} MiB;"
                  f" growth **{soak['rss_growth_pct']:+.2f}%** (target < 5%)", ""]
    if metrics:
        lines += ["## /metrics during the run (coderapi)", "",
                  f"Scraped in the middle of the {top}-client level and after the run. A labelled histogram shows no"
                  " series until its first observation, so NO means declared but never observed.", "",
                  "| what | series | has samples | value(s) after the run |", "|---|---|---|---|"]
        lines += [f"| {w} | `{n}` | {p} | {v} |" for w, n, p, v in metrics]
        lines.append("")
    path.write_text("\n".join(lines))
