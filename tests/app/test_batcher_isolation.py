"""A request that makes the backend raise fails alone: its micro-batch neighbours still get answers; a
background job waits for room in a full queue instead of failing; memory-mode jobs expire."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.backend import Outcome
from app.batcher import MicroBatcher
from app.errors import Overloaded
from app.fake_backend import FakeBackend
from app.jobs import JobRunner, MemoryJobStore


class PoisonBackend(FakeBackend):
    def score(self, rows: list[tuple[str, str]]) -> list[Outcome]:
        if any("poison" in text for _, text in rows):
            raise RuntimeError("backend bug")
        return super().score(rows)


def test_poisoned_request_fails_alone() -> None:
    async def scenario() -> tuple[Any, ...]:
        batcher = MicroBatcher(PoisonBackend(), wait_ms=50, max_rows=64, max_queue_rows=100)
        batcher.start()
        try:
            return tuple(await asyncio.gather(batcher.submit([("item-a", "one two")]),
                                        batcher.submit([("item-a", "poison")]),
                                        batcher.submit([("item-b", "a b c")]), return_exceptions=True))
        finally:
            await batcher.stop()

    good, bad, other = asyncio.run(scenario())
    assert isinstance(bad, RuntimeError)
    assert [outcome.score for outcome in good] == [2] and [outcome.score for outcome in other] == [3]


def test_job_waits_while_the_queue_is_full() -> None:
    refusals = 3

    async def score_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise Overloaded("queue full")
        return [{"id": row["id"], "score": 1} for row in rows]

    async def scenario() -> dict[str, Any]:
        runner = JobRunner(MemoryJobStore(), score_rows)
        job_id = await runner.create([{"id": n, "item_id": "item-a", "answer": "x"} for n in range(3)])
        for _ in range(200):
            record = await runner.get(job_id)
            if record["status"] in ("done", "failed"):
                return record
            await asyncio.sleep(0.05)
        pytest.fail("job never finished")

    record = asyncio.run(scenario())
    assert record["status"] == "done" and len(record["results"]) == 3 and refusals == 0


def test_memory_jobs_expire() -> None:
    """Memory mode keeps finished jobs for job_ttl_s, as Redis does, not for ever."""

    async def scenario() -> tuple[Any, Any]:
        store = MemoryJobStore(ttl_s=60)
        await store.enqueue("old", {"created": time.time() - 61}, [])
        await store.enqueue("new", {"created": time.time()}, [])
        return await store.get("old"), await store.get("new")

    old, new = asyncio.run(scenario())
    assert old is None and new is not None
