"""The exporter's check of the batched head graph: every item's golden answers, mixed in shared batches as the
service mixes them, must give the logits PyTorch gave each item alone (the items' recorded golden logits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from core.grouped_head import GroupedHeads, GroupedMember
from core.manifest import item_spec
from core.onnx_runtime import length_sorted_batches, pad, run_trunk
from export.validate import LOGIT_TOLERANCE, ValidationError
from training.tokenize import encode_texts

MIXED_BATCH = 64


def check_grouped_head(path: Path, items: dict[str, dict[str, Any]], out: Path, trunk: ort.InferenceSession,
                       tokenizer: Tokenizer, prefix: str, threads: int) -> float:
    """The largest |logit difference| over every item's golden answers; raises past the tolerance."""
    heads = GroupedHeads(path, threads)
    members: list[GroupedMember] = []
    rows: list[list[int]] = []
    slots: list[int] = []
    golden: list[np.ndarray] = []
    for item_id, entry in items.items():
        spec = item_spec(out, item_id, entry)
        member = spec.serving_members[0]
        if member.head_format != "ort-adapter" or not spec.golden_texts:
            continue
        slot_rows = encode_texts(tokenizer, spec.golden_texts, prefix)
        rows += slot_rows
        slots += [len(members)] * len(slot_rows)
        golden += [np.asarray(logits, dtype=np.float32) for logits in spec.golden_logits]
        members.append(GroupedMember(heads, member.path))
    worst = 0.0
    slot_of = np.asarray(slots, dtype=np.int64)
    for batch in length_sorted_batches([len(row) for row in rows], MIXED_BATCH):
        ids, mask = pad([rows[i] for i in batch])
        logits = heads.logits(run_trunk(trunk, ids, mask), mask, slot_of[batch], members)
        for position, row in enumerate(batch):
            expected = golden[row]
            worst = max(worst, float(np.abs(logits[position, : expected.shape[0]] - expected).max()))
    if worst > LOGIT_TOLERANCE:
        raise ValidationError(f"batched head graph {path.name}: golden logits differ by {worst:.1e} "
                              f"(tolerance {LOGIT_TOLERANCE:.0e})")
    return worst
