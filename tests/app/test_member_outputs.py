"""Each member's probabilities are kept as blocks per run and aligned to an item's rows once: blocks in any
order across chunks, rows that failed since in another member left out, a row some member missed flagged."""

from __future__ import annotations

import numpy as np

from app.member_outputs import MemberOutputs

KEY = ("item-a", "v1")


def _probabilities(rows: list[int]) -> np.ndarray:
    return np.asarray([[row / 10, 1 - row / 10] for row in rows], dtype=np.float64)


def test_blocks_align_to_the_items_rows_whatever_their_order() -> None:
    outputs = MemberOutputs()
    outputs.keep((KEY, 0), [7, 2], _probabilities([7, 2]))  # a later length bucket first
    outputs.keep((KEY, 0), [5, 0], _probabilities([5, 0]))
    outputs.keep((KEY, 1), [0, 2, 5, 7], _probabilities([0, 2, 5, 7]))
    other = MemberOutputs()  # the lexical thread's own, merged after
    other.keep((("item-b", "v1"), 0), [1], _probabilities([1]))
    outputs.update(other)
    rows = np.asarray([0, 2, 7], dtype=np.int64)  # row 5 failed in the meantime: not among the item's rows
    matrices, complete = outputs.aligned(KEY, 2, rows)
    assert complete.tolist() == [True, True, True]
    for matrix in matrices:
        assert np.array_equal(matrix, _probabilities([0, 2, 7]))


def test_a_row_a_member_did_not_score_is_flagged() -> None:
    outputs = MemberOutputs()
    outputs.keep_logits((KEY, 0), [0, 1], np.zeros((2, 3), dtype=np.float32))
    outputs.keep((KEY, 1), [1], np.full((1, 3), 1 / 3))
    matrices, complete = outputs.aligned(KEY, 2, np.asarray([0, 1], dtype=np.int64))
    assert complete.tolist() == [False, True]
    assert np.allclose(matrices[0], 1 / 3)  # softmax of equal logits
    _, none = outputs.aligned(("item-c", "v1"), 1, np.asarray([3], dtype=np.int64))
    assert none.tolist() == [False]  # no block at all for that member
