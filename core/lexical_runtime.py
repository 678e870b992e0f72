"""The lexical member as served: an ONNX graph (TF-IDF n-grams + logistic regression, made by training's
skl2onnx conversion) that reads the answer's text itself, not the trunk's hidden states."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from core.onnx_runtime import session_options

INPUT_NAME = "text"  # string tensor [N, 1]
PROBABILITIES_OUTPUT = 1  # outputs: label [N], probabilities [N, K] in class order


class LexicalHead:
    """One item's lexical member in its own small session (CPU: string ops have no CUDA kernels)."""

    def __init__(self, model: Path | bytes, threads: int = 1) -> None:
        source = str(model) if isinstance(model, Path) else model
        # No arena: a resident session per item must not keep a batch's worth of memory.
        self.session = ort.InferenceSession(source, session_options(threads, arena=False),
                                            providers=["CPUExecutionProvider"])
        self.nbytes = model.stat().st_size if isinstance(model, Path) else len(model)

    def probabilities(self, texts: Sequence[str]) -> NDArray[np.float64]:
        batch = np.asarray(list(texts), dtype=object).reshape(-1, 1)
        return np.asarray(self.session.run(None, {INPUT_NAME: batch})[PROBABILITIES_OUTPUT], dtype=np.float64)
