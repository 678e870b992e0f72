"""A request that makes the backend raise fails alone: its micro-batch neighbours still get answers;
interactive rows always go ahead of background (job) rows; memory-mode jobs expire."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.backend import Outcome, PreparedRow
from app.batcher import MicroBatcher
from app.job_store import MemoryJobStore
from tests.fake_backend import FakeBackend


class PoisonBackend(FakeBackend):
    poison = FakeBackend().prepare([("item-a", "poison")])[0]

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        if any(row == self.poison for row in rows):
            raise RuntimeError("backend bug")
        return super().score_prepared(rows)


def prepared(backend: FakeBackend, item_id: str, text: str) -> list[PreparedRow]:
    rows = backend.prepare([(item_id, text)])
    assert all(isinstance(row, PreparedRow) for row in rows)
    return rows  # type: ignore[return-value]


def test_poisoned_request_fails_alone() -> None:
    backend = PoisonBackend()

    async def scenario() -> tuple[Any, ...]:
        batcher = MicroBatcher(backend, wait_ms=50, max_rows=64, max_queue_rows=100)
        batcher.start()
        try:
            return tuple(await asyncio.gather(batcher.submit(prepared(backend, "item-a", "one two")),
                                              batcher.submit(prepared(backend, "item-a", "poison")),
                                              batcher.submit(prepared(backend, "item-b", "a b c")),
                                              return_exceptions=True))
        finally:
            await batcher.stop()

    good, bad, other = asyncio.run(scenario())
    assert isinstance(bad, RuntimeError)
    assert [outcome.score for outcome in good] == [2] and [outcome.score for outcome in other] == [3]


class SlowBackend(FakeBackend):
    """Each call takes 20 ms, so requests pile up while one runs; records which rows ran in which call."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[list[int]] = []

    def score_prepared(self, rows: list[PreparedRow]) -> list[Outcome]:
        time.sleep(0.02)
        self.runs.append([len(row.encoded.ids) for row in rows])
        return super().score_prepared(rows)


def test_interactive_rows_go_before_background_rows() -> None:
    """Background pieces queued first still run after an interactive request that arrives later."""
    backend = SlowBackend()

    async def scenario() -> None:
        batcher = MicroBatcher(backend, wait_ms=0, max_rows=4, max_queue_rows=100)
        batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(prepared(backend, "item-b", "x x x"), background=True))
            await asyncio.sleep(0.005)  # that one is running now; queue six background pieces behind it
            pieces = [asyncio.create_task(batcher.submit(prepared(backend, "item-b", "x x x") * 4,
                                                         background=True)) for _ in range(6)]
            await asyncio.sleep(0)
            interactive = asyncio.create_task(batcher.submit(prepared(backend, "item-a", "one")))
            await asyncio.gather(first, interactive, *pieces)
        finally:
            await batcher.stop()

    asyncio.run(scenario())
    interactive_run = next(index for index, run in enumerate(backend.runs) if run == [1])
    assert interactive_run == 1, backend.runs  # right after the run that was already going


def test_memory_jobs_expire() -> None:
    """Memory mode keeps finished jobs for job_ttl_s, as Redis does, not for ever."""

    async def scenario() -> tuple[Any, Any]:
        store = MemoryJobStore(ttl_s=60)
        await store.enqueue("old", {"created": time.time() - 61}, [])
        await store.finish("old")
        await store.enqueue("new", {"created": time.time()}, [])
        return await store.get("old"), await store.get("new")

    old, new = asyncio.run(scenario())
    assert old is None and new is not None
