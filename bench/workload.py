"""The answers and item mixes every system is measured on: real ASAP test answers, fixed seeds."""

from __future__ import annotations

import random
from dataclasses import dataclass

from training.asap import ASAP_ITEMS, load_asap_item

Row = tuple[str, str]  # (item id, answer text)


@dataclass(frozen=True)
class Workload:
    """N bench items; item k borrows the real answers of the ASAP item it was derived from."""

    items: list[str]
    source: dict[str, str]  # bench item -> real ASAP item
    answers: dict[str, list[str]]  # real ASAP item -> its test answers

    def texts_of(self, item: str) -> list[str]:
        return self.answers[self.source[item]]

    def single_item(self, count: int, seed: int) -> list[Row]:
        """The mixed rows' very texts (same seed), all sent to one item: the best case for any system. Same
        texts, so the mixed/single ratio measures what spreading rows over items costs, not answer length."""
        return [(self.items[0], text) for _, text in self.mixed(count, seed)]

    def mixed(self, count: int, seed: int, real_only: bool = False) -> list[Row]:
        """Rows spread over all N items (or the real ones), in random order, as a class set mixing items."""
        items = [item for item in self.items if item == self.source[item]] if real_only else self.items
        rng = random.Random(seed)
        rows = [(items[position % len(items)], rng.choice(self.texts_of(items[position % len(items)])))
                for position in range(count)]
        random.Random(seed + 1).shuffle(rows)
        return rows

    def switching(self, count: int, seed: int) -> list[Row]:
        """Consecutive single answers whose item changes every time (the paper's task-switch scenario)."""
        rng = random.Random(seed)
        rows: list[Row] = []
        previous = ""
        for _ in range(count):
            item = rng.choice([candidate for candidate in self.items if candidate != previous] or self.items)
            rows.append((item, rng.choice(self.texts_of(item))))
            previous = item
        return rows


def bench_item_ids(count: int) -> list[str]:
    """The ten real items first, then synthetic ones (perturbed copies of the real heads)."""
    real = ASAP_ITEMS[: min(count, len(ASAP_ITEMS))]
    return real + [f"syn-{number:04d}" for number in range(count - len(real))]


def source_item(item: str) -> str:
    if item in ASAP_ITEMS:
        return item
    return ASAP_ITEMS[int(item.removeprefix("syn-")) % len(ASAP_ITEMS)]


def load_workload(count: int) -> Workload:
    items = bench_item_ids(count)
    sources = {item: source_item(item) for item in items}
    answers = {real: [text for text, _ in load_asap_item(real).test] for real in sorted(set(sources.values()))}
    return Workload(items=items, source=sources, answers=answers)
