"""The engine as `python -m bench.gpu` runs it: app.onnx_backend.OnnxBackend with the device's execution
provider, at one precision, plus the few calls the check needs that the service does not expose (logits).

A reduced trunk (fp16 on CUDA, int8 on CPU) is measured here whether or not the export allowed serving it:
the export measured its QWK change with CPU kernels, this check measures it on the device."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import numpy as np

from app.backend import AnswerRow, Scored, score_now
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from app.trunks import trunk_for
from core import onnx_runtime
from core.grouped_head import GroupedMember
from core.manifest import Artifacts, BackboneFiles, ItemSpec, backbone_entries, load_artifacts
from core.onnx_runtime import AdapterHead, FloatArray, MergedHead, trunk_head_logits
from training.asap import ASAP_ITEMS

Device = Literal["cpu", "cuda"]
Precision = Literal["fp32", "int8", "fp16"]
Row = tuple[str, str]  # (item id, answer)


def reduced_precision(device: Device) -> Precision:
    """The trunk variant made for the device (app/trunks.py: int8 is CPU-only, fp16 CUDA-only)."""
    return "fp16" if device == "cuda" else "int8"


def with_variant(artifacts: Artifacts, variant: Precision) -> tuple[Artifacts, dict[str, object]]:
    """The artifacts with each backbone's `variant` trunk as exported, allowed or not; the items of backbones
    without one are left out. Raises LookupError when no backbone has one."""
    entries = backbone_entries(artifacts.manifest)
    backbones: dict[str, BackboneFiles] = {}
    facts: dict[str, object] = {}
    for name, files in artifacts.backbones.items():
        entry: dict[str, Any] = entries.get(name, {}).get(variant) or {}
        path = artifacts.root / str(entry.get("file", ""))
        if not entry or not path.is_file():
            facts[name] = {"missing": True}
            continue
        backbones[name] = (dataclasses.replace(files, fp16_path=path) if variant == "fp16"
                           else dataclasses.replace(files, int8_path=path))
        facts[name] = {"file": entry["file"], "allowed_by_export": bool(entry.get("allowed")),
                       "export_mean_test_qwk_change": entry.get("mean_test_qwk_change"),
                       "measured_by_export_on": entry.get("measured_on")}
    if not backbones:
        raise LookupError(f"no {variant} trunk in {artifacts.root}/manifest.json: export it with "
                          f"`python -m export --precision fp32 {variant}` (needs torch: the main .venv)")
    items = {item_id: spec for item_id, spec in artifacts.items.items() if spec.backbone in backbones}
    return dataclasses.replace(artifacts, items=items, backbones=backbones, pending={}), facts


def make_engine(folder: Path, device: Device, precision: Precision, threads: int,
                max_batch_rows: int = 256, grouped: str = "auto") -> tuple[OnnxBackend, dict[str, object]]:
    """The engine over `folder`, warmed up, every head cached on first use and never evicted."""
    # Single heads (ensemble items by their first member, as SCORER_ENSEMBLES=false serves them): precisions
    # are compared head for head, and the golden logits are the heads' own.
    artifacts = load_artifacts(folder, tier="fast")
    facts: dict[str, object] = {}
    if precision != "fp32":
        artifacts, facts = with_variant(artifacts, precision)
    settings = Settings(artifacts=folder, device=device, precision=precision, threads=threads, ensembles=False,
                        cache_bytes=1 << 40, max_batch_rows=max_batch_rows, grouped_heads=grouped)
    backend = OnnxBackend(settings, artifacts)
    backend.warm_up()
    for trunk in backend.trunks.values():
        facts[f"{trunk.name}_providers"] = trunk.session.get_providers()
        facts[f"{trunk.name}_heads"] = "batched" if trunk.grouped else "per-item"
    return backend, facts


@contextmanager
def cuda_provider_options(options: dict[str, str]) -> Iterator[None]:
    """CUDA sessions made inside get these CUDA execution provider options instead of the service's own
    (core.onnx_runtime.providers: fp32 without TF32): what another choice would bring, measured."""
    original = onnx_runtime.providers

    def providers(device: str) -> list[Any]:
        return [("CUDAExecutionProvider", options), "CPUExecutionProvider"] if device == "cuda" else original(device)

    with mock.patch.object(onnx_runtime, "providers", providers):
        yield


def item_logits(backend: OnnxBackend, spec: ItemSpec, texts: list[str]) -> FloatArray | None:
    """The item's first head on its trunk over the texts (the golden-answer path of the service), in input
    order; None when that head does not run on a trunk."""
    trunk = trunk_for(spec, backend.trunks)
    head = backend.cache.get(spec)
    if not isinstance(head, AdapterHead | MergedHead | GroupedMember):
        return None
    return trunk_head_logits(trunk.session, head, [ids for ids, _ in trunk.encoder.encode(texts)])


def served_probabilities(backend: OnnxBackend, spec: ItemSpec, texts: list[str]) -> FloatArray:
    """What the service answers for the texts (every member of the item, combined and rounded)."""
    outcomes = score_now(backend, [AnswerRow(spec.item_id, text) for text in texts])
    return np.asarray([_scored(outcome).probabilities for outcome in outcomes], dtype=np.float32)


def _scored(outcome: object) -> Scored:
    if not isinstance(outcome, Scored):
        raise RuntimeError(f"the engine refused a row: {type(outcome).__name__}: {outcome}")
    return outcome


def score_classes(backend: OnnxBackend, rows: list[Row]) -> list[int]:
    """0-based score classes, in order, through the serving path (tokenize, length buckets, trunk, heads,
    decoding); a row the engine refuses fails the check."""
    outcomes = [_scored(outcome) for outcome in score_now(backend, [AnswerRow(item, text) for item, text in rows])]
    return [backend.artifacts.items[outcome.item_id].labels.index(outcome.score) for outcome in outcomes]


def asap_source(item_id: str) -> str | None:
    """The ASAP set an item was trained on: asap-01 and asap-01-e5 (another backbone's suffix) -> asap-01."""
    match = re.fullmatch(r"(asap-\d\d)(-[a-z0-9]+)?", item_id)
    return match.group(1) if match and match.group(1) in ASAP_ITEMS else None


def max_abs(left: FloatArray, right: FloatArray) -> float:
    return float(np.abs(np.asarray(left, dtype=np.float64) - np.asarray(right, dtype=np.float64)).max())
