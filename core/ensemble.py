"""How an ensemble item turns its members' probability vectors into one: the weighted mean, identically in
training (where the weights and thresholds are chosen), export validation and serving."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def combine(member_probabilities: Sequence[NDArray[np.float64]], weights: Sequence[float]) -> NDArray[np.float64]:
    """Weighted mean of [N, K] probability arrays; weights need not sum to one."""
    if len(member_probabilities) != len(weights) or not member_probabilities:
        raise ValueError(f"{len(member_probabilities)} members but {len(weights)} weights")
    total = float(sum(weights))
    mixed = sum(weight / total * probabilities for weight, probabilities in zip(weights, member_probabilities,
                                                                                strict=True))
    return np.asarray(mixed, dtype=np.float64)
