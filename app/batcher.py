"""Micro-batching across requests and items: gather rows for a few ms, score them in one call.

Inference runs in one dedicated thread (ORT parallelises inside each run); the event loop only queues.
A bounded queue turns overload into an immediate 429 instead of a pile of timeouts."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from app import metrics
from app.backend import Backend, Outcome
from app.errors import Overloaded


@dataclass
class _Request:
    rows: list[tuple[str, str]]
    future: asyncio.Future[list[Outcome]]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(self, backend: Backend, wait_ms: float, max_rows: int, max_queue_rows: int) -> None:
        self.backend = backend
        self.wait_s = wait_ms / 1000
        self.max_rows = max_rows
        self.max_queue_rows = max_queue_rows
        self.queued_rows = 0
        self.in_flight = 0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, rows: list[tuple[str, str]]) -> list[Outcome]:
        if not rows:
            return []
        if self.queued_rows + len(rows) > self.max_queue_rows:
            metrics.REJECTED.labels("overloaded").inc()
            raise Overloaded(f"queue full ({self.queued_rows} answers waiting); retry shortly")
        request = _Request(rows, asyncio.get_running_loop().create_future())
        self.queued_rows += len(rows)
        metrics.QUEUE_ROWS.set(self.queued_rows)
        await self._queue.put(request)
        return await request.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            rows = len(batch[0].rows)
            deadline = time.perf_counter() + self.wait_s
            while rows < self.max_rows:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), max(remaining, 0))
                except TimeoutError:
                    break
                batch.append(request)
                rows += len(request.rows)
            await self._score(batch)

    async def _score(self, batch: list[_Request]) -> None:
        now = time.perf_counter()
        for request in batch:
            metrics.STAGE_SECONDS.labels("queue").observe(now - request.queued_at)
        flat = [row for request in batch for row in request.rows]
        self.in_flight += len(flat)
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._executor, self.backend.score, flat)
        except Exception:
            # A bug must fail only the request that triggers it, not the batcher or its batch neighbours:
            # score each request alone so the others still get their answers.
            for request in batch:
                try:
                    alone = await loop.run_in_executor(self._executor, self.backend.score, request.rows)
                except Exception as exc:
                    if not request.future.done():
                        request.future.set_exception(exc)
                else:
                    if not request.future.done():
                        request.future.set_result(alone)
        else:
            start = 0
            for request in batch:
                if not request.future.done():  # the client may have gone away
                    request.future.set_result(outcomes[start : start + len(request.rows)])
                start += len(request.rows)
        finally:
            self.in_flight -= len(flat)
            self.queued_rows -= len(flat)
            metrics.QUEUE_ROWS.set(self.queued_rows)
