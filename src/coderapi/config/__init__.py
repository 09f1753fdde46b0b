"""coderapi's configuration: the server's `Settings` (settings.py) and the model registry's entries
(models.py). One definition feeds env vars (CODERAPI_*), the config file, `--help` and the docs."""

from coderapi.config.models import (
    EMBEDDED_GGUF,
    EMBEDDED_MODEL,
    EmbeddedSize,
    GenerationDefaults,
    ModelInfo,
    ModelSpec,
    default_models,
)
from coderapi.config.settings import Settings

__all__ = [
    "EMBEDDED_GGUF", "EMBEDDED_MODEL", "EmbeddedSize", "GenerationDefaults", "ModelInfo", "ModelSpec",
    "Settings", "default_models",
]
