"""The live counters of the engine behind a backend, for /metrics.

Services read them through here, so they never import the engine layer themselves."""

from __future__ import annotations

from coderapi.backends.base import Backend
from coderapi.engines.base import EngineStats

__all__ = ["EngineStats", "engine_stats"]


def engine_stats(backend: Backend) -> EngineStats | None:
    """The counters of `backend`'s engine, or of the backend itself where it has no engine (the
    pass-through upstream counts its requests at the replicas and those waiting at the gateway)."""
    engine = getattr(backend, "engine", None)
    if engine is not None:
        return engine.stats()
    own = getattr(backend, "stats", None)
    return None if own is None else own()
