"""An item's evidence index (core/evidence.py), built at export from its human-scored training answers.

The vectors are the exported head's own `pooled` output through the exported trunk, exactly as the service
computes them for an answer it scores, so a served answer that repeats a training answer finds it at
similarity 1. Only answers the model was allowed to learn from go in (ASAP: the training split, never test);
their ids are the data set's own (ASAP `Id`), so a teacher can look the answer up; texts only on request
(`--evidence-texts`)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import onnxruntime as ort

from core.evidence import write_index
from core.fingerprints import file_sha256
from core.onnx_runtime import HeadRunner, trunk_head_outputs
from export.options import ExportOptions
from training.artifacts import AdapterRecord
from training.asap import ASAP_ITEMS, item_csv, score_range
from training.tokenize import encode_texts

EVIDENCE_FORMAT = 1
EvidenceRow = tuple[str, str, int]  # (stored id, answer text, 0-based human score)


def evidence_rows(record: AdapterRecord, options: ExportOptions) -> list[EvidenceRow]:
    """The item's training answers with ids: given to the export (add-item, tests), else the ASAP training
    split where the data set is on this machine, else none (a Docker build: the item has no evidence)."""
    if record.config.get("member_tag"):
        return []  # an extra member of an ensemble (second seed, both raters): searched only as its first member
    for key in (record.item_id, record.source_item):
        if key in options.evidence_rows:
            return options.evidence_rows[key]
    if record.source_item not in ASAP_ITEMS:
        return []
    path = item_csv(record.source_item, options.data_root)
    if not path.is_file():
        return []
    low = score_range(record.source_item).low
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["Id"], row["EssayText"], int(float(row["Score1"])) - low)
                for row in csv.DictReader(handle) if row["split"] == "train"]


def evidence_fingerprint(rows: list[EvidenceRow], options: ExportOptions) -> str | None:
    """Part of an item head's export key: a change of its evidence rows or of the texts flag re-exports it.
    None where there is nothing to build (no rows at hand, or --no-evidence): the export then keeps the index
    an earlier export built for the same head (export/backbone.py), rather than dropping it."""
    if not rows:
        return None
    digest = hashlib.sha256()
    for row_id, text, score in rows:
        digest.update(f"{row_id}\x00{text}\x00{score}\x01".encode("utf-8", "surrogatepass"))
    return f"{EVIDENCE_FORMAT}:{options.evidence_texts}:{digest.hexdigest()[:16]}"


def build_evidence(record: AdapterRecord, rows: list[EvidenceRow], tokenizer: Any, prefix: str,
                   trunk: ort.InferenceSession, head: HeadRunner, options: ExportOptions) -> dict[str, Any] | None:
    """Writes items/<id>/<version>.evidence.npz from `rows` (evidence_rows); returns its manifest entry (None:
    no rows)."""
    if not rows:
        return None
    _, pooled = trunk_head_outputs(trunk, head, encode_texts(tokenizer, [text for _, text, _ in rows], prefix),
                                   pooled=True)
    if pooled is None:
        raise RuntimeError(f"{record.item_id}: its head graph has no pooled output")
    path: Path = options.out / "items" / record.item_id / f"{record.version}.evidence.npz"
    write_index(path, pooled, [row_id for row_id, _, _ in rows], [score for _, _, score in rows],
                [text for _, text, _ in rows] if options.evidence_texts else None)
    return {"file": str(path.relative_to(options.out)), "sha256": file_sha256(path), "bytes": path.stat().st_size,
            "answers": len(rows), "member": f"{record.item_id}@{record.version}", "texts": options.evidence_texts,
            "format": EVIDENCE_FORMAT, "key": evidence_fingerprint(rows, options)}
