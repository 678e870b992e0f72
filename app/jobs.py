"""Background scoring jobs for large class sets, run through the same path as /batch.

Scheduling: a job is stored first (durable in Redis mode), then started by the sweeper of whichever
replica has a free slot (`max_running` per replica), oldest first. A running job sends its rows to the
micro-batcher one small piece at a time as background work, so interactive requests always go ahead of it.
The runner holds a lease, renewed with each progress write; a job whose lease lapsed (its runner was
stopped or died) is taken over by any replica and scored again from the start. A job-store outage never
fails a job: its runner keeps the results in memory, retries the store until it is back, and meanwhile
answers GET /jobs/{id} from memory. Each key may have at most `max_rows_per_owner` unscored rows queued."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app import metrics
from app.errors import JobNotFound, JobStoreUnavailable, PayloadTooLarge, QuotaExceeded
from app.job_store import TERMINAL, JobStore
from app.security import Caller

log = logging.getLogger("scorer.jobs")
T = TypeVar("T")
# One piece of a job's rows (and whether the job asked for evidence) -> one result dict per row.
RowScorer = Callable[[list[dict[str, Any]], bool], Awaitable[list[dict[str, Any]]]]
SAVE_EVERY_ROWS = 256  # progress (and the lease) is written to the store this often


class JobRunner:
    def __init__(self, store: JobStore, score_rows: RowScorer, lease_s: float = 30.0, max_running: int = 2,
                 piece_rows: int = 64, max_rows_per_owner: int = 100_000) -> None:
        self.store = store
        self.score_rows = score_rows  # background scoring of one piece of rows -> one result dict per row
        self.lease_s = lease_s
        self.max_running = max_running
        self.piece_rows = piece_rows
        self.max_rows_per_owner = max_rows_per_owner
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, dict[str, Any]] = {}  # jobs of this runner, until their final record is stored
        self._kick = asyncio.Event()
        self._paused = False
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="job-sweeper")

    def pause(self) -> None:
        """Draining: start no more jobs here (the queued ones wait for another replica or the next start)."""
        self._paused = True

    async def create(self, rows: list[dict[str, Any]], caller: Caller, explain: bool = False) -> str:
        if len(rows) > self.max_rows_per_owner:
            raise PayloadTooLarge(f"at most {self.max_rows_per_owner} rows per job")
        queued = await self.store.rows_left_of(caller.owner)
        if queued + len(rows) > self.max_rows_per_owner:
            metrics.REJECTED.labels("quota").inc()
            raise QuotaExceeded(f"this key already has {queued} answers waiting in unfinished jobs (limit "
                                f"{self.max_rows_per_owner}); retry when they finish, or cancel one")
        job_id = uuid.uuid4().hex
        record = {"job_id": job_id, "status": "queued", "total": len(rows), "done": 0, "created": time.time(),
                  "results": None, "error": None, "owner": caller.owner, "explain": explain}
        await self.store.enqueue(job_id, record, rows)
        self._kick.set()
        return job_id

    async def get(self, job_id: str, caller: Caller) -> dict[str, Any]:
        local = self._records.get(job_id)
        try:
            record = await self.store.get(job_id)
            if record is not None and record["status"] not in TERMINAL and await self.store.cancelled(job_id):
                record = {**record, "status": "cancelled", "results": None}
        except JobStoreUnavailable:
            if local is None:
                raise
            record = local
        if local is not None and (record is None or (record["status"] not in TERMINAL
                                                    and local["done"] >= record.get("done", 0))):
            # This runner holds the job: its record is the freshest (the store gets progress every
            # SAVE_EVERY_ROWS rows, and a restarted store holds an older write), so `done` never goes back.
            record = local
        # Another key's job is answered exactly like a missing one: ids are not a way to probe for jobs.
        if record is None or not (caller.admin or record.get("owner") == caller.owner):
            raise JobNotFound(f"no job {job_id!r}")
        return record

    async def cancel(self, job_id: str, caller: Caller) -> dict[str, Any]:
        """Stop an unfinished job, or drop a finished job's results (they are personal data)."""
        record = await self.get(job_id, caller)
        if record["status"] in ("cancelled", "deleted"):
            return record
        status = "deleted" if record["status"] in TERMINAL else "cancelled"
        record = {**record, "status": status, "results": None, "finished": time.time()}
        await self.store.cancel(job_id)
        await self.store.put(job_id, record)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
        return record

    async def _sweep(self) -> None:
        """Start queued jobs while this replica has a free slot; take over jobs whose lease lapsed."""
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that arrives as the event is set
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.lease_s / 3, 0.1)):
                    await self._kick.wait()
            self._kick.clear()
            if self._paused:
                continue
            try:
                for job_id in await self.store.pending():
                    if len(self._tasks) >= self.max_running:
                        break
                    if job_id not in self._tasks and await self.store.claim(job_id, self.lease_s):
                        await self._start(job_id)
            except JobStoreUnavailable:
                pass  # counted by the store; the next sweep retries

    async def _start(self, job_id: str) -> None:
        record, rows = await self.store.get(job_id), await self.store.rows(job_id)
        if record is None or rows is None or record["status"] in TERMINAL or await self.store.cancelled(job_id):
            await self.store.finish(job_id)  # finished, cancelled or expired already: only bookkeeping was left
            return
        if record["status"] == "running":
            log.warning("job %s re-queued: its runner stopped before finishing", job_id)
            metrics.JOBS_REQUEUED.inc()
            record["restarts"] = int(record.get("restarts", 0)) + 1  # says why `done` starts again from 0
        record.update(status="running", done=0, results=None, error=None, started=time.time())
        self._records[job_id] = record
        task = asyncio.create_task(self._run(job_id, record, rows), name=f"job-{job_id[:8]}")
        self._tasks[job_id] = task

        def finished(_: asyncio.Task[None]) -> None:
            self._tasks.pop(job_id, None)
            self._kick.set()  # a slot is free: start the next queued job now

        task.add_done_callback(finished)

    async def _run(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        try:
            await self._retrying(lambda: self.store.put(job_id, record))  # "running" before the first piece
            results: list[dict[str, Any]] = []
            for start in range(0, len(rows), self.piece_rows):
                piece = rows[start : start + self.piece_rows]
                results.extend(await self.score_rows(piece, bool(record.get("explain"))))
                record["done"] = len(results)
                due = record["done"] % SAVE_EVERY_ROWS < self.piece_rows and record["done"] < len(rows)
                if due and not await self._retrying(lambda: self._progress(job_id, record)):
                    return  # cancelled, or another replica took it over while the store was unreachable
            record.update(status="done", results=results, finished=time.time())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("job %s failed: %s", job_id, type(exc).__name__)
            record.update(status="failed", error=f"{type(exc).__name__}: scoring stopped")
        try:
            await self._retrying(lambda: self._final(job_id, record))
        finally:
            self._records.pop(job_id, None)

    async def _progress(self, job_id: str, record: dict[str, Any]) -> bool:
        if await self.store.cancelled(job_id) or not await self.store.renew(job_id, self.lease_s):
            return False
        await self.store.put(job_id, record)
        return True

    async def _final(self, job_id: str, record: dict[str, Any]) -> None:
        if await self.store.cancelled(job_id):
            return
        await self.store.put(job_id, record)
        await self.store.finish(job_id)

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Job-store outages pause the job instead of failing it; backoff up to 2 s between tries."""
        pause = 0.1
        while True:
            try:
                return await operation()
            except JobStoreUnavailable:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *([self._sweeper] if self._sweeper else [])]
        running = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job_id in running:  # hand the unfinished jobs to the next process at once, not after the lease
            with contextlib.suppress(JobStoreUnavailable):
                await self.store.release(job_id)
