"""Micro-batching across requests and items: gather rows for a few ms, score them in one call.

Inference runs in one dedicated thread (ORT parallelises inside each run); the event loop only queues. A
batch's results are combined and decoded on a second thread while the next batch's models run, so that the
device (a GPU above all) does not wait for the host's decoding between runs.
Two queues: interactive requests (/score, /batch) always go first, and never share a run with job rows:
a run cannot be interrupted, so an interactive request that joined a 64-row job run waited for all of it
(11.6 s median beside 8 jobs, measured). Job rows are queued in small units and run alone: while
interactive requests have come in within the last second, a job run takes only about `background_slice_ms`
of work (units at the measured seconds per job row), so an arriving request waits for at most one short
slice; when nobody is asking, job runs take full batches (small slices cost jobs 3x their throughput,
measured). Only interactive rows are bounded here (a full queue is an immediate 429 instead of a pile of
timeouts); job rows are bounded by the job runner, which keeps at most one piece per running job queued."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from app import metrics
from app.backend import Backend, Outcome, PreparedRow
from app.errors import Overloaded

JOB_UNIT_ROWS = 1  # job rows are queued one by one: a slice is any number of them
INTERACTIVE_RECENT_S = 1.0  # interactive traffic seen within this long: job runs are slices


@dataclass
class _Request:
    rows: list[PreparedRow]
    background: bool
    future: asyncio.Future[list[Outcome]]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(self, backend: Backend, wait_ms: float, max_rows: int, max_queue_rows: int,
                 background_slice_ms: float = 15.0) -> None:
        self.backend = backend
        self.wait_s = wait_ms / 1000
        self.max_rows = max_rows
        self.background_slice_s = background_slice_ms / 1000
        self.seconds_per_job_row: float | None = None  # moving average over job slices (not full batches:
        # a row costs several times more in a small run, where each session run's fixed cost is shared by few)
        self._last_interactive = float("-inf")  # monotonic time of the last interactive submit
        self.max_queue_rows = max_queue_rows
        self.queued_rows = 0  # interactive rows waiting, running or finishing (what admission looks at)
        self.background_rows = 0
        self._interactive: deque[_Request] = deque()
        self._background: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish")
        self._finishing: asyncio.Task[None] | None = None  # the batch being combined and decoded, if any
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._finishing is not None:
            await asyncio.gather(self._finishing, return_exceptions=True)
        self._executor.shutdown(wait=True)
        self._finisher.shutdown(wait=True)

    async def submit(self, rows: list[PreparedRow], background: bool = False) -> list[Outcome]:
        if not rows:
            return []
        if not background and self.queued_rows + len(rows) > self.max_queue_rows:
            metrics.REJECTED.labels("overloaded").inc()
            raise Overloaded(f"queue full ({self.queued_rows} answers waiting); retry shortly")
        if background and len(rows) > JOB_UNIT_ROWS:
            parts = await asyncio.gather(*(self.submit(rows[start : start + JOB_UNIT_ROWS], background=True)
                                           for start in range(0, len(rows), JOB_UNIT_ROWS)))
            return [outcome for part in parts for outcome in part]
        if not background:
            self._last_interactive = time.monotonic()
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

    def background_slice_rows(self) -> int:
        """Job rows per run: a full batch when no interactive request came in lately, else about
        `background_slice_ms` of work at the measured pace (one unit before any measurement)."""
        if time.monotonic() - self._last_interactive > INTERACTIVE_RECENT_S:
            return self.max_rows
        if self.seconds_per_job_row is None:
            return JOB_UNIT_ROWS
        return max(1, min(self.max_rows, int(self.background_slice_s / self.seconds_per_job_row)))

    def _take(self, room: int, batch: list[_Request]) -> int:
        """Move queued requests into the batch while they fit (the first always does): interactive ones, or,
        when none waits, one slice of job rows."""
        taken = 0
        queue = self._interactive if self._interactive or (batch and not batch[0].background) else self._background
        if queue is self._background:
            room = min(room, self.background_slice_rows())
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
            while rows < self.max_rows and not batch[0].background:  # a job slice starts at once
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
        """The batch's model runs on the inference thread; its finishing (combining, decoding) on the finishing
        thread, while the next batch's model runs start (double buffering: at most one batch finishing)."""
        now = time.perf_counter()
        for request in batch:
            metrics.stage("queue").observe(now - request.queued_at)
        flat = [row for request in batch for row in request.rows]
        loop = asyncio.get_running_loop()
        handed_off = False
        try:
            started = time.perf_counter()
            try:
                run = await loop.run_in_executor(self._executor, self.backend.run_models, flat)
            except Exception:
                await self._alone(batch)
                return
            if batch[0].background and len(flat) < self.max_rows:
                # The inference thread's time per job row: what an interactive request arriving now waits for
                # (the slice's finishing runs on the other thread, beside the next batch).
                per_row = (time.perf_counter() - started) / len(flat)
                average = self.seconds_per_job_row
                self.seconds_per_job_row = per_row if average is None else 0.7 * average + 0.3 * per_row
            previous = self._finishing
            # Chained to the previous finish (results leave in order); from here the batch's own task owns it.
            self._finishing = asyncio.create_task(self._finish(batch, run, previous), name="micro-batch finish")
            handed_off = True
            if previous is not None:
                # At most one batch finishing while the next runs its models (shielded: a stop lets it finish).
                await asyncio.shield(previous)
        finally:
            if not handed_off:  # scored alone, or the batcher stopped before its models came back
                for request in batch:
                    if not request.future.done():
                        request.future.cancel()
                self._release(batch)

    async def _finish(self, batch: list[_Request], run: object, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._finisher, self.backend.finish, run)
        except Exception:
            await self._alone(batch)
        else:
            start = 0
            for request in batch:
                if not request.future.done():  # the client may have gone away
                    request.future.set_result(outcomes[start : start + len(request.rows)])
                start += len(request.rows)
        finally:
            self._release(batch)

    async def _alone(self, batch: list[_Request]) -> None:
        """A bug must fail only the request that triggers it, not the batcher or its batch neighbours: each
        request scored alone, so the others still get their answers."""
        loop = asyncio.get_running_loop()
        for request in batch:
            try:
                alone = await loop.run_in_executor(self._executor, self.backend.score_prepared, request.rows)
            except Exception as exc:
                if not request.future.done():
                    request.future.set_exception(exc)
            else:
                if not request.future.done():
                    request.future.set_result(alone)

    def _release(self, batch: list[_Request]) -> None:
        for request in batch:
            if request.background:
                self.background_rows -= len(request.rows)
            else:
                self.queued_rows -= len(request.rows)
        metrics.QUEUE_ROWS.set(self.queued_rows + self.background_rows)
