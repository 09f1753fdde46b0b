"""Server-rendered SVG bar charts: geometry computed here, drawn by templates/_charts.html.

No JavaScript and nothing downloaded: bars carry a <title> for hover tooltips, and the colours
come from CSS classes (the page's Content-Security-Policy allows no inline styles).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from coderapi.web.filters import compact

WIDTH, HEIGHT = 760, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 24, 10, 26
MAX_X_LABELS = 10
SERIES_CLASSES = ("bar", "bar-2")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    cls: str
    title: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    grid: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_labels: list[tuple[float, str]] = field(default_factory=list)  # (x centre, label)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, name)
    empty: bool = True
    label: str = ""


def nice_step(top: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `ticks` gridlines."""
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    fmt: Callable[[float], str] = compact,
    label: str = "",
    width: int = WIDTH,
) -> Chart:
    """Stacked bars, one per label; `series` is [(name, values per label)], bottom first. Give
    `width` about the pixels the chart is shown at, so its labels keep their size."""
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    chart = Chart(width=width, label=label, legend=[(SERIES_CLASSES[i % 2], n) for i, (n, _) in enumerate(series)])
    if not labels:
        return chart
    chart.empty = not any(totals)
    step = nice_step(max(totals) or 1)
    if all(float(t).is_integer() for t in totals):
        step = max(step, 1)  # counts: no half requests on the axis
    top = step * math.ceil((max(totals) or 1) / step)
    plot_w, plot_h = width - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    scale = plot_h / top
    chart.grid = [(PAD_TOP + plot_h - v * scale, fmt(v)) for v in _ticks(step, top)]
    slot = plot_w / len(labels)
    bar_w = max(2.0, min(36.0, slot * 0.7))
    every = math.ceil(len(labels) / max(3, min(MAX_X_LABELS, width // 70)))
    for i, name in enumerate(labels):
        centre = PAD_LEFT + slot * i + slot / 2
        if i % every == 0:
            chart.x_labels.append((centre, name))
        chart.bars.extend(_stack(series, i, centre - bar_w / 2, bar_w, PAD_TOP + plot_h, scale, name, fmt))
    return chart


def _ticks(step: float, top: float) -> list[float]:
    count = int(round(top / step))
    return [step * k for k in range(count + 1)]


def _stack(series, i: int, x: float, w: float, base: float, scale: float, name: str, fmt) -> list[Bar]:
    bars, y = [], base
    for n, (series_name, values) in enumerate(series):
        value = values[i]
        if value <= 0:
            continue
        h = max(1.0, value * scale)
        y -= h
        title = f"{name} · {series_name}: {fmt(value)}"
        bars.append(Bar(round(x, 2), round(y, 2), round(w, 2), round(h, 2), SERIES_CLASSES[n % 2], title))
    return bars


def share(value: float, biggest: float) -> int:
    """A percentage width for horizontal bars (at least 1 when the value is not zero)."""
    if biggest <= 0 or value <= 0:
        return 0
    return max(1, round(100 * value / biggest))
