"""Each item member's probabilities in a scoring call, kept as the blocks its runs produced (rows, matrix)
and aligned to the item's rows once per item: a dict entry per row and member, stacked again per item, cost
about 12 us per row on the host (bench/host_path.py), more than any model run of a GPU batch leaves."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from numpy.typing import NDArray

from core.decoding import softmax

Probabilities = NDArray[np.float64]
IndexArray = NDArray[np.int64]
MemberKey = tuple[tuple[str, str], int]  # (the item version's key, member index)


class MemberOutputs:
    def __init__(self) -> None:
        self.blocks: dict[MemberKey, list[tuple[IndexArray, Probabilities]]] = defaultdict(list)

    def keep_logits(self, key: MemberKey, indices: list[int], logits: NDArray[np.floating]) -> None:
        self.keep(key, indices, softmax(logits))

    def keep(self, key: MemberKey, indices: list[int], probabilities: Probabilities) -> None:
        self.blocks[key].append((np.asarray(indices, dtype=np.int64), probabilities))

    def update(self, other: MemberOutputs) -> None:
        for key, blocks in other.blocks.items():
            self.blocks[key].extend(blocks)

    def aligned(self, item_key: tuple[str, str], members: int, rows: IndexArray
                ) -> tuple[list[Probabilities], NDArray[np.bool_]]:
        """Each member's probabilities for `rows` (ascending call indices), and which rows every member scored
        (a row without some member's output is never scored by fewer members than its item names)."""
        complete = np.ones(len(rows), dtype=bool)
        matrices: list[Probabilities] = []
        for member_index in range(members):
            blocks = self.blocks.get((item_key, member_index), [])
            width = blocks[0][1].shape[1] if blocks else 1
            matrix = np.zeros((len(rows), width), dtype=np.float64)
            seen = np.zeros(len(rows), dtype=bool)
            for indices, probabilities in blocks:
                # A block may hold rows that failed since in another member: they are not among `rows`.
                positions = np.minimum(np.searchsorted(rows, indices), len(rows) - 1)
                present = rows[positions] == indices
                matrix[positions[present]] = probabilities[present]
                seen[positions[present]] = True
            complete &= seen
            matrices.append(matrix)
        return matrices, complete
