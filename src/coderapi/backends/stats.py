"""The live counters of the engine behind a backend, for /metrics.

Services read them through here, so they never import the engine layer themselves."""

from __future__ import annotations

from coderapi.backends.base import Backend
from coderapi.engines.base import EngineStats

__all__ = ["EngineStats", "engine_stats"]


def engine_stats(backend: Backend) -> EngineStats | None:
    """The counters of `backend`'s engine; None for a backend without one (pass-through upstream)."""
    engine = getattr(backend, "engine", None)
    return None if engine is None else engine.stats()
