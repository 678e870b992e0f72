"""Micro-batching across requests and items: gather rows for a few ms, score them in one call.

Inference runs in one dedicated thread (ORT parallelises inside each run); the event loop only queues.
Two queues: interactive requests (/score, /batch) always go first; background job rows only fill the room
left in a run, so a pile of jobs never delays a student's answer. Only interactive rows are bounded here
(a full queue is an immediate 429 instead of a pile of timeouts); job rows are bounded by the job runner,
which keeps at most one small piece per running job in the queue."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from app import metrics
from app.backend import Backend, Outcome, PreparedRow
from app.errors import Overloaded


@dataclass
class _Request:
    rows: list[PreparedRow]
    background: bool
    future: asyncio.Future[list[Outcome]]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(self, backend: Backend, wait_ms: float, max_rows: int, max_queue_rows: int) -> None:
        self.backend = backend
        self.wait_s = wait_ms / 1000
        self.max_rows = max_rows
        self.max_queue_rows = max_queue_rows
        self.queued_rows = 0  # interactive rows waiting or in the running batch (what admission looks at)
        self.background_rows = 0
        self._interactive: deque[_Request] = deque()
        self._background: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, rows: list[PreparedRow], background: bool = False) -> list[Outcome]:
        if not rows:
            return []
        if not background and self.queued_rows + len(rows) > self.max_queue_rows:
            metrics.REJECTED.labels("overloaded").inc()
            raise Overloaded(f"queue full ({self.queued_rows} answers waiting); retry shortly")
        request = _Request(rows, background, asyncio.get_running_loop().create_future())
        if background:
            self.background_rows += len(rows)
            self._background.append(request)
        else:
            self.queued_rows += len(rows)
            self._interactive.append(request)
        metrics.QUEUE_ROWS.set(self.queued_rows + self.background_rows)
        self._wake.set()
        return await request.future

    def _take(self, room: int, batch: list[_Request]) -> int:
        """Move queued requests into the batch, interactive first, while they fit (the first always does)."""
        taken = 0
        for queue in (self._interactive, self._background):
            while queue and (not batch or len(queue[0].rows) <= room - taken):
                request = queue.popleft()
                batch.append(request)
                taken += len(request.rows)
        return taken

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch: list[_Request] = []
            rows = self._take(self.max_rows, batch)
            if not batch:
                continue
            deadline = time.perf_counter() + self.wait_s
            while rows < self.max_rows:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    rows += self._take(self.max_rows - rows, batch)  # what is queued already, no waiting
                    break
                try:
                    async with asyncio.timeout(remaining):  # not wait_for: it can swallow a cancel on 3.11
                        await self._wake.wait()
                except TimeoutError:
                    continue
                self._wake.clear()
                rows += self._take(self.max_rows - rows, batch)
            if self._interactive or self._background:
                self._wake.set()  # leftovers start the next batch at once
            await self._score(batch)

    async def _score(self, batch: list[_Request]) -> None:
        now = time.perf_counter()
        for request in batch:
            metrics.STAGE_SECONDS.labels("queue").observe(now - request.queued_at)
        flat = [row for request in batch for row in request.rows]
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._executor, self.backend.score_prepared, flat)
        except Exception:
            # A bug must fail only the request that triggers it, not the batcher or its batch neighbours:
            # score each request alone so the others still get their answers.
            for request in batch:
                try:
                    alone = await loop.run_in_executor(self._executor, self.backend.score_prepared, request.rows)
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
            for request in batch:
                if request.background:
                    self.background_rows -= len(request.rows)
                else:
                    self.queued_rows -= len(request.rows)
            metrics.QUEUE_ROWS.set(self.queued_rows + self.background_rows)
