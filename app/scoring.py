"""Row validation, the duplicate-answer cache and the micro-batcher, in front of the backend."""

from __future__ import annotations

from app import metrics
from app.backend import Backend, Outcome, Scored
from app.batcher import MicroBatcher
from app.duplicate_cache import DuplicateCache, cache_key
from app.errors import ScoringError, UnknownItem, ValidationFailed
from app.registry import ITEM_ID
from app.settings import Settings


def check_answer(text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise ValidationFailed("answer must be a string")
    if not text.strip():
        raise ValidationFailed("answer is empty")
    if len(text) > max_chars:
        raise ValidationFailed(f"answer longer than {max_chars} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no tokenizer or digest can take it
        raise ValidationFailed("answer is not valid Unicode text (unpaired surrogate)") from None
    return text


class ScoringService:
    def __init__(self, backend: Backend, batcher: MicroBatcher, duplicates: DuplicateCache,
                 settings: Settings) -> None:
        self.backend = backend
        self.batcher = batcher
        self.duplicates = duplicates
        self.settings = settings

    def check_row(self, item_id: object, text: object) -> tuple[str, str]:
        if not isinstance(item_id, str) or not ITEM_ID.match(item_id) or item_id not in self.backend.items():
            raise UnknownItem(f"unknown item {item_id!r}" if isinstance(item_id, str) and len(item_id) <= 64
                              else "unknown item")
        return item_id, check_answer(text, self.settings.max_answer_chars)

    async def score(self, rows: list[tuple[object, object]]) -> list[Outcome]:
        """One outcome per row, in order. Bad rows get their own error; the rest are scored."""
        outcomes: list[Outcome | None] = [None] * len(rows)
        valid: list[int] = []
        checked: list[tuple[str, str]] = []
        for index, (item_id, text) in enumerate(rows):
            try:
                checked.append(self.check_row(item_id, text))
                valid.append(index)
            except ScoringError as error:
                outcomes[index] = error
        items = self.backend.items()
        keys = [cache_key(item_id, items[item_id].version, text) for item_id, text in checked]
        cached = await self.duplicates.get_many(keys) if keys else []
        misses: list[int] = []
        for position, hit in enumerate(cached):
            if hit is not None and hit.adapter_version == items[checked[position][0]].version:
                outcomes[valid[position]] = hit
                metrics.DUPLICATE_HITS.inc()
            else:
                misses.append(position)
        if misses:
            scored = await self.batcher.submit([checked[p] for p in misses])
            fresh: dict[str, Scored] = {}
            for position, outcome in zip(misses, scored, strict=True):
                outcomes[valid[position]] = outcome
                if isinstance(outcome, Scored):
                    fresh[keys[position]] = outcome
            if fresh:
                await self.duplicates.put_many(fresh)
        return [outcome if outcome is not None else ScoringError("not scored") for outcome in outcomes]
