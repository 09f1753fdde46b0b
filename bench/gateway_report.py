"""The tables of bench/gateway.py: per target and mode, and the coderapi/LiteLLM ratios against
issue 13's targets. Markdown, so that the same text is printed and written to docs/."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone

TARGETS = {"overhead p50 ratio": 0.2, "per-CPU-second ratio": 5.0, "p99/p50 at c=64": 3.0}


@dataclass
class Cell:
    """What one target measured in one mode, over every round."""

    c1: list[float] = field(default_factory=list)
    c64: list[float] = field(default_factory=list)
    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    def add_c64(self, latencies: list[float], wall: float, cpu: float) -> None:
        self.c64 += latencies
        self.requests += len(latencies)
        self.wall += wall
        self.cpu += cpu

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def per_cpu_second(self) -> float:
        return self.requests / self.cpu if self.cpu else float("inf")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; load average at the end: {load}"


def _cell_rows(cells: dict, base: dict) -> list[str]:
    rows = ["| mode | target | c=1 p50 ms | c=1 p99 ms | added p50 ms | added p99 ms | c=64 req/s | "
            "c=64 p50 ms | c=64 p99 ms | p99/p50 | req per CPU-s |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (name, mode), cell in sorted(cells.items(), key=lambda item: (item[0][1] != "non-streamed",)):
        p50, p99 = percentile(cell.c1, 0.5), percentile(cell.c1, 0.99)
        b50, b99 = base[mode]
        added = ("—", "—") if name == "upstream" else (ms(p50 - b50), ms(p99 - b99))
        h50, h99 = percentile(cell.c64, 0.5), percentile(cell.c64, 0.99)
        rows.append(f"| {mode} | {name} | {ms(p50)} | {ms(p99)} | {added[0]} | {added[1]} | {cell.rps:.0f} | "
                    f"{ms(h50)} | {ms(h99)} | {h99 / h50:.2f} | {cell.per_cpu_second:.0f} |")
    return rows


def _ratio_rows(cells: dict, base: dict, modes: list[str]) -> list[str]:
    rows = ["| mode | overhead p50 coderapi/LiteLLM (target ≤ 0.2) | req per CPU-s coderapi/LiteLLM (target ≥ 5) | "
            "coderapi p99/p50 at c=64 (target ≤ 3) |", "|---|---|---|---|"]
    for mode in modes:
        ours, theirs = cells[("coderapi", mode)], cells[("litellm", mode)]
        b50 = base[mode][0]
        overhead = (percentile(ours.c1, 0.5) - b50) / (percentile(theirs.c1, 0.5) - b50)
        per_cpu = ours.per_cpu_second / theirs.per_cpu_second
        tail = percentile(ours.c64, 0.99) / percentile(ours.c64, 0.5)

        def verdict(value: float, target: float, lower_is_better: bool) -> str:
            met = value <= target if lower_is_better else value >= target
            return f"{value:.2f} ({'met' if met else 'not met'})"

        rows.append(f"| {mode} | {verdict(overhead, 0.2, True)} | {verdict(per_cpu, 5, False)} | "
                    f"{verdict(tail, 3, True)} |")
    return rows


def report(cells: dict, versions: dict, args, seconds: float) -> str:
    modes = list(dict.fromkeys(mode for _, mode in cells))  # in the order measured
    base = {mode: (percentile(cells[("upstream", mode)].c1, 0.5), percentile(cells[("upstream", mode)].c1, 0.99))
            for mode in modes}
    lines = [
        "# Gateway cost: coderapi vs LiteLLM proxy (bench/gateway.py)",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s. Machine: {machine()}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Per target and mode, {args.rounds} interleaved rounds of {args.c1} sequential requests (c=1) and "
        f"up to {args.c64} requests or {args.c64_seconds:.0f} s at c=64; all figures pool the rounds.",
        "Load generator: 64 httpx.AsyncClients (one keep-alive connection each) in one Python process, on the "
        "same cores as the gateway and the upstream; the upstream-alone c=64 row is its ceiling.",
        "Added latency = the gateway's percentile minus the upstream-alone percentile (c=1, to the last byte).",
        "Req per CPU-s = requests answered / CPU seconds (utime+stime) of the target's process tree "
        "during the c=64 phases: requests per second per fully used core.",
        "",
        *_cell_rows(cells, base),
        "",
        "Ratios against issue 13's targets:",
        "",
        *_ratio_rows(cells, base, modes),
        "",
        "Not like for like: LiteLLM runs without a database (master-key auth only, no spend rows); coderapi "
        "reads the auth epoch from SQLite on every request (so a key revoked anywhere is refused at once), "
        "holds the request's worst-case cost from the key's credit lease (one transaction per lease, not per "
        "request), prices it, journals its usage on disk and writes a usage row per request (group-committed), "
        "forwarding in passthrough mode.",
        "",
        "Reproduce: `python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]==1.108.7'`, "
        "then `.venv/bin/python bench/gateway.py --markdown docs/gateway-bench.md`.",
        "",
    ]
    return "\n".join(lines)
