"""The `x-ratelimit-*` headers, in the shape OpenAI's API sends them."""

from __future__ import annotations

from coderapi.limits.bucket import Level


def duration(seconds: float) -> str:
    """Go-style durations as OpenAI writes them: 0s, 250ms, 1.5s, 6m0s."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def ratelimit_headers(levels: dict[str, Level]) -> dict[str, str]:
    """`levels` maps a dimension ("requests", "tokens") to its bucket after the take."""
    headers: dict[str, str] = {}
    for dimension, level in levels.items():
        headers[f"x-ratelimit-limit-{dimension}"] = str(int(level.take.capacity))
        headers[f"x-ratelimit-remaining-{dimension}"] = str(level.remaining)
        headers[f"x-ratelimit-reset-{dimension}"] = duration(level.seconds_to_full)
    return headers
