"""In-process llama.cpp engine with continuous batching (see engine.py for the contract)."""

from .engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]
