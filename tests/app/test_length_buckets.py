"""Trunk runs cut by length: little padding, no tiny runs, every row exactly once, order kept."""

from __future__ import annotations

import random

from app.length_buckets import length_buckets


def _padding(lengths: list[int], buckets: list[slice]) -> float:
    padded = sum(len(lengths[b]) * max(lengths[b]) for b in buckets)
    return 1 - sum(lengths) / padded


def test_real_looking_lengths_pad_far_less_than_one_run() -> None:
    rng = random.Random(0)
    lengths = sorted(min(128, int(rng.lognormvariate(3.6, 0.6))) for _ in range(64))
    buckets = length_buckets(lengths, max_rows=64, min_tokens=512, max_padding=0.2)
    assert [i for b in buckets for i in range(len(lengths))[b]] == list(range(len(lengths)))
    assert _padding(lengths, buckets) < 0.2 < _padding(lengths, [slice(0, 64)])
    assert all(len(lengths[b]) * max(lengths[b]) >= 512 for b in buckets[:-1])


def test_equal_lengths_make_one_run_and_max_rows_caps_it() -> None:
    assert length_buckets([20] * 10, max_rows=64) == [slice(0, 10)]
    assert length_buckets([20] * 10, max_rows=4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert length_buckets([], max_rows=4) == []


def test_small_runs_are_not_split_even_when_padded() -> None:
    # 3 short rows and one long: splitting would leave runs below min_tokens, so they stay together.
    assert length_buckets([5, 5, 5, 100], max_rows=64, min_tokens=1024) == [slice(0, 4)]
    assert length_buckets([5] * 300 + [100], max_rows=1000, min_tokens=1024) == [slice(0, 300), slice(300, 301)]
