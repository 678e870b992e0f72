"""The bench's item mixes: what each scenario promises about the rows it hands every system."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from bench.workload import bench_item_ids, load_workload, source_item


def test_synthetic_items_borrow_real_answers() -> None:
    items = bench_item_ids(27)
    assert items[:10] == [f"asap-{n:02d}" for n in range(1, 11)]
    assert items[10] == "syn-0000" and len(set(items)) == 27
    assert source_item("syn-0013") == "asap-04"
    assert source_item("asap-07") == "asap-07"


def test_switching_changes_item_every_request_and_mixed_covers_all() -> None:
    workload = load_workload(12)
    switching = workload.switching(200, seed=1)
    assert all(a[0] != b[0] for a, b in pairwise(switching))
    mixed = workload.mixed(120, seed=2)
    counts = Counter(item for item, _ in mixed)
    assert set(counts) == set(workload.items) and set(counts.values()) == {10}
    for item, text in mixed[:20]:
        assert text in workload.texts_of(item)
    single = workload.single_item(50, seed=3)
    assert {item for item, _ in single} == {"asap-01"}
    assert workload.mixed(40, seed=5) == workload.mixed(40, seed=5)  # fixed seeds: every system sees the same
