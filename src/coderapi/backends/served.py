"""A served model: its registry entry, the backend that answers it and the weights behind it.

Built by backends/factory.py and listed by services/registry.py; it lives here, below both, so
the factory does not import the services layer."""

from __future__ import annotations

from dataclasses import dataclass

from coderapi.backends.base import Backend
from coderapi.config import ModelSpec


@dataclass
class ServedModel:
    spec: ModelSpec
    backend: Backend
    weights: str  # what really answers, in words (file name or upstream URLs): for admins

    def shown_weights(self, admin: bool) -> str:
        """What serves this model, as shown to a caller: admins see `weights`; others see only
        the backend kind of an upstream model, whose URLs can name private hosts."""
        if admin or self.spec.backend != "upstream":
            return self.weights
        return "upstream: an OpenAI-compatible server"
