"""Each candidate member's probabilities on an item's validation and test answers: the item's adapters (one
per backbone, through PyTorch as training evaluates them) and its lexical member (through its ONNX graph)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.lexical_runtime import LexicalHead
from training.artifacts import AdapterRecord, adapter_model, current_record, read_manifest
from training.backbones import resolve_backbone
from training.data import ItemData
from training.lexical import fit_lexical
from training.pipeline import encode_item
from training.trainer import FeatureSource, predict_proba

SCORED_SPLITS = ("validation", "test")


@dataclass
class Candidate:
    """A possible member: what it is, how it is served, and its probabilities per scored split."""

    name: str  # "asap-01@v1", "asap-01-e5@v1", "lexical"
    kind: str  # "adapter" | "lexical"
    backbone: str  # the trunk it needs; "" for the lexical member
    probabilities: dict[str, NDArray[np.float64]]
    record: AdapterRecord | None = None
    onnx: bytes = b""  # the lexical member's graph
    seconds: float = 0.0  # time to fit (lexical) or to score the splits (adapters)
    extra: dict[str, Any] = field(default_factory=dict)
    tag: str = ""  # an extra adapter on the same backbone ("r2": trained on both raters)

    @property
    def label(self) -> str:
        """What kind of member it is, the same for every item: "minilm-en", "minilm-en/r2", "lexical"."""
        return (self.backbone or self.kind) + (f"/{self.tag}" if self.tag else "")


def item_adapters(root: Path, source_item: str) -> list[AdapterRecord]:
    """The current adapter of every backbone trained on this data set item (asap-01, asap-01-e5, ...), the
    default backbone's first."""
    records = []
    for key in sorted(read_manifest(root)["items"]):
        record = current_record(root, key)
        if record is not None and record.source_item == source_item:
            records.append(record)
    return sorted(records, key=lambda record: (record.item_id != source_item, record.item_id))


def adapter_candidate(record: AdapterRecord, item: ItemData, backbone_folder: str | None = None) -> Candidate:
    """backbone_folder: a local backbone folder instead of the record's registered name (tests)."""
    import time

    started = time.perf_counter()
    backbone = resolve_backbone(backbone_folder or str(record.config["backbone"]["name"]))
    model = adapter_model(record, backbone.path)
    encoded = encode_item(item, backbone)
    probabilities = {split: predict_proba(model, FeatureSource(model, encoded[split][0], cache_trunk=False,
                                                               batch_size=32), 32)
                     for split in SCORED_SPLITS}
    return Candidate(f"{record.item_id}@{record.version}", "adapter", str(record.config["backbone"]["name"]),
                     probabilities, record=record, seconds=time.perf_counter() - started,
                     tag=str(record.config.get("member_tag", "")))


def lexical_candidate(item: ItemData, seed: int = 13, refit: bool = False) -> Candidate:
    """Fitted on the training answers only: validation stays free for choosing, test for reporting.

    refit: the member that is served (its graph, and so its test probabilities) is fitted again on training +
    validation answers, as after a cross-validated choice; its validation probabilities, which the choice and
    the decoding are made on, stay those of the training-only fit. Test is still held out from everything."""
    import time

    started = time.perf_counter()
    low = item.score_range.low

    def fit(rows: list[tuple[str, int]]) -> bytes:
        return fit_lexical([text for text, _ in rows], [score - low for _, score in rows], item.score_range.size,
                           seed)

    onnx = fit(item.train)
    probabilities = {"validation": LexicalHead(onnx).probabilities([text for text, _ in item.validation])}
    if refit:
        onnx = fit(item.train + item.validation)
    probabilities["test"] = LexicalHead(onnx).probabilities([text for text, _ in item.test])
    return Candidate("lexical", "lexical", "", probabilities, onnx=onnx, seconds=time.perf_counter() - started,
                     extra={"refit_on": "train+validation"} if refit else {})
