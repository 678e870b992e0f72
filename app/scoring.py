"""Row validation, tokenization, the duplicate-answer cache and the micro-batcher, in front of the backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from app import metrics
from app.backend import AnswerRow, Backend, Outcome, PreparedRow, Scored
from app.batcher import MicroBatcher
from app.duplicate_cache import DuplicateCache, cache_key
from app.errors import PayloadTooLarge, ScoringError, UnknownItem, ValidationFailed, error_body
from app.settings import Settings
from core.item_ids import is_item_id


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


def row_result(row_id: object, outcome: Outcome) -> dict[str, Any]:
    """A /batch or job row's result: the score, or the row's own error in the stable error shape."""
    if isinstance(outcome, Scored):
        # Shallow: with asdict's deep copy of every list, building the response took 14.5 us per row, now 3.7.
        return {"id": row_id, **vars(outcome)}
    return {"id": row_id, **error_body(outcome)}


class ScoringService:
    def __init__(self, backend: Backend, batcher: MicroBatcher, duplicates: DuplicateCache,
                 settings: Settings) -> None:
        self.backend = backend
        self.batcher = batcher
        self.duplicates = duplicates
        self.settings = settings

    @property
    def max_rows_per_request(self) -> int:
        """A request larger than the interactive queue could never be admitted: it gets 413, not 429."""
        return min(self.settings.max_answers_per_request, self.settings.max_queue_rows)

    def check_request_size(self, rows: int) -> None:
        if rows > self.max_rows_per_request:
            raise PayloadTooLarge(f"at most {self.max_rows_per_request} answers per request; "
                                  "send larger sets to POST /jobs")

    def known_item(self, item_id: object) -> str:
        """The one item check of a request: a slug this deployment serves, else 404 unknown_item."""
        if not is_item_id(item_id) or item_id not in self.backend.items():
            raise UnknownItem(f"unknown item {item_id!r}" if isinstance(item_id, str) and len(item_id) <= 64
                              else "unknown item")
        assert isinstance(item_id, str)
        return item_id

    async def score_answers(self, item_id: str, texts: list[str], explain: bool = False) -> list[Outcome]:
        """Answers to one item already checked by the route (`known_item`); one outcome per answer, in order."""
        return await self._score([(item_id, text) for text in texts], background=False, explain=explain)

    async def score_rows(self, rows: list[dict[str, Any]], background: bool = False,
                         explain: bool = False) -> list[dict[str, Any]]:
        """Rows {id, item_id, answer} (a /batch body or a job's piece) -> one result dict per row, in order.

        Each row's item is checked here; a bad row gets its own error and the others are scored.
        `background`: job rows, scored after every waiting interactive request. `explain`: with evidence."""
        outcomes = await self._score([(row.get("item_id"), row.get("answer")) for row in rows], background,
                                     check_items=True, explain=explain)
        return [row_result(row.get("id"), outcome) for row, outcome in zip(rows, outcomes, strict=True)]

    async def _score(self, rows: list[tuple[object, object]], background: bool,
                     check_items: bool = False, explain: bool = False) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(rows)
        checked: list[tuple[int, AnswerRow]] = []
        for index, (item_id, text) in enumerate(rows):
            try:
                item = self.known_item(item_id) if check_items else str(item_id)
                checked.append((index, AnswerRow(item, check_answer(text, self.settings.max_answer_chars))))
            except ScoringError as error:
                outcomes[index] = error
        # The tokenizer is CPU work: off the event loop. Its ids key the duplicate cache.
        prepared = await asyncio.to_thread(self.backend.prepare, [row for _, row in checked]) if checked else []
        ready: list[tuple[int, PreparedRow]] = []
        for (index, _), row in zip(checked, prepared, strict=True):
            if isinstance(row, PreparedRow):
                ready.append((index, replace(row, explain=True) if explain else row))
            else:
                outcomes[index] = row
        await self._score_ready(ready, outcomes, background, use_cache=not explain)
        return [outcome if outcome is not None else ScoringError("not scored") for outcome in outcomes]

    async def _score_ready(self, ready: list[tuple[int, PreparedRow]], outcomes: list[Outcome | None],
                           background: bool, use_cache: bool = True) -> None:
        """use_cache False (explain): every row is scored afresh, and not cached (its result carries evidence
        the cache's other readers did not ask for)."""
        if not use_cache:
            scored = await self.batcher.submit([row for _, row in ready], background) if ready else []
            for (index, _), outcome in zip(ready, scored, strict=True):
                outcomes[index] = outcome
            return
        items = self.backend.items()
        versions = [row.spec.version if row.spec is not None else items[row.item_id].version
                    if row.item_id in items else "" for _, row in ready]
        keys = [cache_key(row.item_id, version, row.digest)
                for (_, row), version in zip(ready, versions, strict=True)]
        cached = await self.duplicates.get_many(keys) if keys else []
        misses: list[int] = []
        for position, hit in enumerate(cached):
            if hit is not None and hit.adapter_version == versions[position]:
                outcomes[ready[position][0]] = hit
                metrics.DUPLICATE_HITS.inc()
            else:
                misses.append(position)
        if not misses:
            return
        scored = await self.batcher.submit([ready[p][1] for p in misses], background)
        fresh: dict[str, Scored] = {}
        for position, outcome in zip(misses, scored, strict=True):
            outcomes[ready[position][0]] = outcome
            if isinstance(outcome, Scored) and outcome.adapter_version == versions[position]:
                fresh[keys[position]] = outcome
        if fresh:
            await self.duplicates.put_many(fresh)
