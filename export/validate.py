"""Export validation: ONNX Runtime (trunk -> head, as served) against the PyTorch adapter model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch
from numpy.typing import NDArray

from app.onnx_parts import FloatArray, HeadRunner, decode_scores, pad, softmax
from training.encoder import ScoringModel
from training.metrics import quadratic_weighted_kappa

LOGIT_TOLERANCE = 1e-4


class ValidationError(RuntimeError):
    pass


@dataclass
class Comparison:
    max_abs_logit_diff: float
    score_mismatches: int
    onnx_logits: FloatArray


def _batches(lengths: list[int], size: int = 64) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + size] for start in range(0, len(order), size)]


def onnx_logits(trunk: ort.InferenceSession, head: HeadRunner, rows: list[list[int]]) -> FloatArray:
    out: FloatArray | None = None
    for batch in _batches([len(row) for row in rows]):
        ids, mask = pad([rows[i] for i in batch])
        hidden = trunk.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})[0]
        logits = head.logits(hidden, mask)
        if out is None:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[batch] = logits
    assert out is not None
    return out


def torch_logits(model: ScoringModel, rows: list[list[int]]) -> FloatArray:
    model.eval()
    out = np.zeros((len(rows), model.head.classifier.out_features), dtype=np.float32)
    with torch.no_grad():
        for batch in _batches([len(row) for row in rows]):
            ids, mask = pad([rows[i] for i in batch])
            out[batch] = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return out


def compare(reference: FloatArray, candidate: FloatArray, thresholds: list[float] | None) -> Comparison:
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    mismatches = int((decode_scores(softmax(reference), thresholds)
                      != decode_scores(softmax(candidate), thresholds)).sum())
    return Comparison(diff, mismatches, candidate)


def require_match(item_id: str, comparison: Comparison) -> None:
    if comparison.max_abs_logit_diff > LOGIT_TOLERANCE or comparison.score_mismatches:
        raise ValidationError(
            f"{item_id}: ONNX differs from PyTorch (max |logit diff| {comparison.max_abs_logit_diff:.2e}, "
            f"tolerance {LOGIT_TOLERANCE:.0e}; {comparison.score_mismatches} predicted scores differ)"
        )


def qwk_of(logits: FloatArray, truth: list[int], thresholds: list[float] | None) -> float:
    predicted: NDArray[np.int64] = decode_scores(softmax(logits), thresholds)
    return quadratic_weighted_kappa(truth, list(predicted), list(range(logits.shape[1])))
