"""What an export is asked to do, and the small rules every export step shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from export.validate import ValidationError
from training.artifacts import AdapterRecord
from training.asap import ASAP_ITEMS, load_asap_item
from training.backbones import ResolvedBackbone

HeadFormat = Literal["ort-adapter", "merged"]
# full: every validation and test answer through PyTorch and ONNX Runtime (CI, `make test`, releases);
# golden: only the item's golden answers (the serve path: seconds per item instead of minutes).
Validation = Literal["full", "golden"]
EXPORTER_VERSION = 1
GOLDEN_COUNT = 8
MAX_MEAN_QWK_DROP = 0.005


@dataclass
class ExportOptions:
    adapters: Path
    out: Path
    head_format: HeadFormat = "ort-adapter"
    int8: bool = False
    threads: int = 2
    data_root: Path | None = None
    backbone: str | None = None  # a local HF folder instead of the registered name (tests)
    backbone_folders: dict[str, Path] = field(default_factory=dict)  # backbone name -> local folder (tests)
    # Validation/test answers of items whose data is not the ASAP set: item -> split -> (texts, 0-based labels)
    item_texts: dict[str, dict[str, tuple[list[str], list[int]]]] = field(default_factory=dict)
    # Export only these backbones (None: all). The others keep their previous export as it was, so adding an
    # English item never re-validates ten multilingual heads.
    backbones: tuple[str, ...] | None = None
    fp16: bool = False  # also a half-precision trunk for the GPU (inputs and outputs stay int64 / float32)
    validate: Validation = "full"
    fused: bool = True  # also the fused trunk (export/fused.py), served where it validates
    grouped: bool = True  # also the batched head graph (served on CUDA; the CPU image leaves it out)
    # Only these item keys are checked anew (add-item: its own heads); every other exported head keeps its entry
    # as it was, whatever check it passed (None: the validation level decides, as in `make export`).
    recheck: frozenset[str] | None = None
    # The evidence index per item (export/evidence.py): on by default; `make serve` leaves it to its background
    # stage so the first answer does not wait for it. Texts of the evidence answers only on request.
    evidence: bool = True
    evidence_texts: bool = False
    # Training answers with ids of items whose data is not the ASAP set: item -> [(id, text, 0-based score)]
    evidence_rows: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    log: Callable[[str], None] = print


def item_texts(record: AdapterRecord, options: ExportOptions) -> dict[str, tuple[list[str], list[int]]]:
    """Validation + test answers of the item where its data is at hand (given by the adapter's own key or by
    the data set item all its adapters share; ASAP items: the shared data set)."""
    source_item = record.source_item
    for key in (record.item_id, source_item):
        if key in options.item_texts:
            return options.item_texts[key]
    data_root = options.data_root
    if source_item not in ASAP_ITEMS:
        return {}
    try:
        item = load_asap_item(source_item, data_root)
    except Exception:  # data set not on this machine (e.g. a Docker build): golden answers only
        return {}
    low = item.score_range.low
    return {name: ([t for t, _ in rows], [s - low for _, s in rows])
            for name, rows in (("validation", item.validation), ("test", item.test))}


def check_backbone(record: AdapterRecord, backbone: ResolvedBackbone) -> None:
    wanted = record.config["backbone"]["weights_sha256"]
    if wanted != backbone.weights_sha256:
        raise ValidationError(
            f"{record.item_id} {record.version} was trained on backbone weights {wanted[:12]}..., "
            f"but {backbone.spec.name} here has {backbone.weights_sha256[:12]}...; retrain it"
        )
