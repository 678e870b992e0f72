"""Export validation: ONNX Runtime (trunk -> head, as served) against the PyTorch adapter model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from core.decoding import decode, softmax
from core.onnx_runtime import FloatArray, length_sorted_batches, pad
from training.encoder import ScoringModel
from training.metrics import quadratic_weighted_kappa

LOGIT_TOLERANCE = 1e-4


class ValidationError(RuntimeError):
    pass


# This process's ONNX logits of exported heads, by the head's export key (a fingerprint of its trunk, format,
# adapter bytes, config and head graph: a different head can never share it) and the answers. The ensemble
# check reuses what the head's own check just computed instead of running every answer through it again.
_ONNX_LOGITS: dict[tuple[str, str], FloatArray] = {}


def _answers_digest(answers: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\x00".join(answers).encode("utf-8", "surrogatepass")).hexdigest()


def remember_logits(item_key: str, answers: list[str], logits: FloatArray) -> None:
    _ONNX_LOGITS[(item_key, _answers_digest(answers))] = logits


def recall_logits(item_key: str, answers: list[str]) -> FloatArray | None:
    return _ONNX_LOGITS.get((item_key, _answers_digest(answers)))


def forget_logits() -> None:
    """At the end of an export: a long-lived process (export.rest beside the service) keeps none of it."""
    _ONNX_LOGITS.clear()


@dataclass
class Comparison:
    max_abs_logit_diff: float
    score_mismatches: int
    onnx_logits: FloatArray


def torch_logits(model: ScoringModel, rows: list[list[int]]) -> FloatArray:
    model.eval()
    out = np.zeros((len(rows), model.head.classifier.out_features), dtype=np.float32)
    with torch.no_grad():
        for batch in length_sorted_batches([len(row) for row in rows]):
            ids, mask = pad([rows[i] for i in batch])
            out[batch] = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return out


def compare(reference: FloatArray, candidate: FloatArray, thresholds: list[float] | None) -> Comparison:
    diff = float(np.abs(reference - candidate).max()) if reference.size else 0.0
    mismatches = int((decode(softmax(reference), thresholds)
                      != decode(softmax(candidate), thresholds)).sum())
    return Comparison(diff, mismatches, candidate)


def require_match(item_id: str, comparison: Comparison) -> None:
    if comparison.max_abs_logit_diff > LOGIT_TOLERANCE or comparison.score_mismatches:
        raise ValidationError(
            f"{item_id}: ONNX differs from PyTorch (max |logit diff| {comparison.max_abs_logit_diff:.2e}, "
            f"tolerance {LOGIT_TOLERANCE:.0e}; {comparison.score_mismatches} predicted scores differ)"
        )


def qwk_of(logits: FloatArray, truth: list[int], thresholds: list[float] | None) -> float:
    predicted: NDArray[np.int64] = decode(softmax(logits), thresholds)
    return quadratic_weighted_kappa(truth, list(predicted), list(range(logits.shape[1])))
