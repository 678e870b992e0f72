"""A deterministic in-memory backend for unit tests of the HTTP layer (no ONNX, no files): the Backend
interface of app/backend.py with a cased word "tokenizer"."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.backend import UNKNOWN_SHARE_FOR_REVIEW, AnswerRow, Outcome, PreparedRow, Scored
from app.errors import ItemUnavailable, NoScorableContent, ScoringError, UnknownItem
from core.answer_tokens import EncodedAnswer
from core.manifest import ItemSpec


def fake_spec(item_id: str, labels: int = 3, version: str = "v1") -> ItemSpec:
    return ItemSpec(item_id, version, "fake", Path("/nonexistent"), list(range(labels)), None, 0.5, "0" * 64, 1,
                    {"test_qwk": 0.9})


@dataclass(frozen=True)
class FakeRun:
    """What the fake's run_models hands to its finish (its own type: a mix-up of the two halves fails)."""

    outcomes: list[Outcome]


class FakeBackend:
    """Score = number of words, capped at the top of the range; items named 'broken-*' cannot load."""

    def __init__(self, specs: list[ItemSpec] | None = None) -> None:
        self._items = {spec.item_id: spec for spec in specs or [fake_spec("item-a"), fake_spec("item-b", 4)]}
        self.ready = False
        self.calls: list[int] = []
        self.preparing: dict[str, dict[str, Any]] = {}  # rows per call: shows micro-batching

    def items(self) -> dict[str, ItemSpec]:
        return self._items

    def pending(self) -> dict[str, dict[str, Any]]:
        return self.preparing

    def is_cached(self, spec: ItemSpec) -> bool:
        return True

    def warm_up(self) -> None:
        self.ready = True

    def reload(self, item_id: str) -> ItemSpec:
        return self._step(item_id, +1)

    def rollback(self, item_id: str) -> ItemSpec:
        return self._step(item_id, -1)

    def _step(self, item_id: str, step: int) -> ItemSpec:
        spec = self._items.get(item_id)
        if spec is None:
            raise UnknownItem(f"unknown item {item_id!r}")
        number = int(spec.version.lstrip("v")) + step
        if number < 1:
            raise UnknownItem(f"item {item_id!r} has no earlier version")
        self._items[item_id] = fake_spec(item_id, len(spec.labels), f"v{number}")
        return self._items[item_id]

    def activate(self, item_id: str, version: str) -> ItemSpec:
        spec = self._items.get(item_id)
        if spec is None:
            raise UnknownItem(f"unknown item {item_id!r}")
        self._items[item_id] = fake_spec(item_id, len(spec.labels), version)
        return self._items[item_id]

    def prepare(self, rows: list[AnswerRow]) -> list[PreparedRow | ScoringError]:
        """A cased word "tokenizer": ids are CRC-32s of the words; words without ASCII letters are unknown."""
        prepared: list[PreparedRow | ScoringError] = []
        for item_id, text in rows:
            if item_id not in self._items:
                prepared.append(UnknownItem(f"unknown item {item_id!r}"))
                continue
            words = [word for word in text.split() if word.isprintable()]
            if not words:
                prepared.append(NoScorableContent("the answer has nothing the model can read"))
                continue
            ids = [zlib.crc32(word.encode()) for word in words]
            unknown = sum(not any(char.isascii() and char.isalnum() for char in word) for word in words)
            prepared.append(PreparedRow(item_id, EncodedAnswer.of_ids(ids, False, len(ids), unknown)))
        return prepared

    def run_models(self, rows: list[PreparedRow]) -> FakeRun:
        # Subclasses override score_prepared: the batcher still reaches it through here.
        return FakeRun(self.score_prepared(rows))

    def finish(self, run: FakeRun) -> list[Outcome]:
        assert isinstance(run, FakeRun), f"finish got {type(run).__name__}, not what run_models returned"
        return run.outcomes

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        self.calls.append(len(rows))
        outcomes: list[Outcome] = []
        for row in rows:
            spec = self._items.get(row.item_id)
            if spec is None:
                outcomes.append(UnknownItem(f"unknown item {row.item_id!r}"))
                continue
            if row.item_id.startswith("broken"):
                outcomes.append(ItemUnavailable(f"item {row.item_id!r}: head file cannot be loaded"))
                continue
            score = min(len(row.encoded.ids), len(spec.labels) - 1)
            probabilities = [0.8 if k == score else 0.2 / (len(spec.labels) - 1) for k in range(len(spec.labels))]
            reasons = ["unknown_words"] if row.encoded.unknown_share >= UNKNOWN_SHARE_FOR_REVIEW else []
            outcomes.append(Scored(row.item_id, score, probabilities, 0.8, bool(reasons), spec.version, False,
                                   reasons))
        return outcomes
