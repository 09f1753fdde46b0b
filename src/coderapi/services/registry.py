"""The model registry: public ids and aliases -> the backend that serves them, and the catalogue."""

from __future__ import annotations

from coderapi.backends.served import ServedModel  # re-exported: services name it from here
from coderapi.config import ModelInfo
from coderapi.errors import ModelNotFound

CREATED = 1731369600  # Qwen2.5-Coder's release (2024-11-12), a stable `created` for the catalogue


class ModelRegistry:
    def __init__(self, served: list[ServedModel]) -> None:
        self._served = served
        self._by_id: dict[str, ServedModel] = {}
        for model in served:
            for name in [model.spec.id, *model.spec.aliases]:
                self._by_id[name] = model

    @property
    def models(self) -> list[ServedModel]:
        return list(self._served)

    def resolve(self, model_id: str) -> ServedModel:
        try:
            return self._by_id[model_id]
        except KeyError:
            raise ModelNotFound(
                f"The model `{model_id}` does not exist or you do not have access to it.", param="model"
            ) from None

    def ids(self) -> list[str]:
        return list(self._by_id)

    def public_models(self) -> list[tuple[str, ServedModel]]:
        """Every id a request may name (each model's own id, then its aliases) and what serves it."""
        return list(self._by_id.items())

    def catalogue_entry(self, model_id: str, *, admin: bool = False) -> dict:
        """The model's catalogue entry; `admin` shows upstream URLs in `info.weights`."""
        model = self.resolve(model_id)
        spec = model.spec
        info = (spec.info or ModelInfo(name=spec.id)).model_dump(exclude_none=True)
        info["weights"] = model.shown_weights(admin)
        served_by = spec.id
        return {
            "id": model_id,
            "object": "model",
            "created": CREATED,
            "owned_by": spec.owned_by,
            "type": "chat-completion",
            "aliases": [a for a in [spec.id, *spec.aliases] if a != model_id],
            "served_by": served_by,
            "info": info,
            "tags": ["playground:chat", "fim", "tools", "structured_output"],
            "capabilities": ["streaming", "tools", "structured_output", "fim", "logprobs"],
            "modalities": {"input": ["text"], "output": ["text"]},
            "pricing": {
                "kind": "fixed",
                "currency": "USD",
                "units": [
                    {"dimension": "input_tokens", "per": 1_000_000, "price": spec.price_input_per_million},
                    {"dimension": "output_tokens", "per": 1_000_000, "price": spec.price_output_per_million},
                ],
            },
        }

    def catalogue(self, *, admin: bool = False) -> list[dict]:
        return [self.catalogue_entry(model_id, admin=admin) for model_id in self._by_id]
