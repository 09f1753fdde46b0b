"""The remote completion engine: the Engine contract over a pool of raw-completion servers."""

from coderapi.engines.remote.engine import RemoteCompletionEngine

__all__ = ["RemoteCompletionEngine"]
