"""Asynchronous scoring jobs for large class sets: in process memory, or in Redis (any replica answers).

In Redis a job is durable: its rows are stored with it and it stays in a pending set until finished. The
replica running it holds a lease renewed per chunk; a job whose lease lapsed (its runner was stopped or
died) is taken over by the sweeper of any replica and scored again from the start, so a restart loses no
accepted job. A Redis failure fails the jobs in flight with a clear status instead of leaving them
"running" for ever."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any, Protocol

from app import metrics
from app.errors import JobNotFound, JobStoreUnavailable, Overloaded

log = logging.getLogger("scorer.jobs")
CHUNK_ROWS = 256
TERMINAL = ("done", "failed")
UNSAVED_LIMIT = 1000  # final records kept in memory while the store is down (oldest dropped first)


class JobStore(Protocol):
    async def enqueue(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None: ...

    async def put(self, job_id: str, record: dict[str, Any]) -> None: ...

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def rows(self, job_id: str) -> list[dict[str, Any]] | None: ...

    async def pending(self) -> list[str]: ...

    async def claim(self, job_id: str, lease_s: float) -> bool:
        """Take the job's lease; False when another runner holds it."""
        ...

    async def renew(self, job_id: str, lease_s: float) -> None: ...

    async def release(self, job_id: str) -> None: ...

    async def finish(self, job_id: str) -> None: ...


class MemoryJobStore:
    """One process: jobs die with it, so there is nothing to lease or take over. Records expire after
    `ttl_s` like Redis keys do; without that every finished job's results would stay in memory for ever."""

    def __init__(self, ttl_s: float = 7 * 24 * 3600) -> None:
        self.ttl_s = ttl_s
        self._jobs: dict[str, dict[str, Any]] = {}  # insertion order = creation order

    async def enqueue(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        expired_before = time.time() - self.ttl_s
        for old_id in list(self._jobs):
            if self._jobs[old_id]["created"] >= expired_before:
                break
            del self._jobs[old_id]
        self._jobs[job_id] = record

    async def put(self, job_id: str, record: dict[str, Any]) -> None:
        self._jobs[job_id] = record

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.get(job_id)

    async def rows(self, job_id: str) -> list[dict[str, Any]] | None:
        return None

    async def pending(self) -> list[str]:
        return []

    async def claim(self, job_id: str, lease_s: float) -> bool:
        return True

    async def renew(self, job_id: str, lease_s: float) -> None:
        return None

    async def release(self, job_id: str) -> None:
        return None

    async def finish(self, job_id: str) -> None:
        return None


PENDING = "scorer:jobs:pending"


class RedisJobStore:
    """Every failure surfaces as JobStoreUnavailable (503), never as a raw Redis exception (500)."""

    def __init__(self, client: Any, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex  # this process, as lease holder

    async def _call(self, operation: Any) -> Any:
        try:
            return await operation
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            raise JobStoreUnavailable(f"job store unavailable ({type(exc).__name__}); retry shortly") from exc

    async def enqueue(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(f"scorer:job:{job_id}", json.dumps(record), ex=self.ttl_s)
                pipe.set(f"scorer:job:{job_id}:rows", json.dumps(rows), ex=self.ttl_s)
                pipe.sadd(PENDING, job_id)
                await pipe.execute()

        await self._call(write())

    async def put(self, job_id: str, record: dict[str, Any]) -> None:
        await self._call(self.client.set(f"scorer:job:{job_id}", json.dumps(record), ex=self.ttl_s))

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self._call(self.client.get(f"scorer:job:{job_id}"))
        return json.loads(raw) if raw else None

    async def rows(self, job_id: str) -> list[dict[str, Any]] | None:
        raw = await self._call(self.client.get(f"scorer:job:{job_id}:rows"))
        return json.loads(raw) if raw else None

    async def pending(self) -> list[str]:
        members = await self._call(self.client.smembers(PENDING))
        return sorted(member.decode() if isinstance(member, bytes) else str(member) for member in members)

    async def claim(self, job_id: str, lease_s: float) -> bool:
        lease = f"scorer:job:{job_id}:lease"
        return bool(await self._call(self.client.set(lease, self.owner, nx=True, px=int(lease_s * 1000))))

    async def renew(self, job_id: str, lease_s: float) -> None:
        await self._call(self.client.set(f"scorer:job:{job_id}:lease", self.owner, px=int(lease_s * 1000)))

    async def release(self, job_id: str) -> None:
        await self._call(self.client.delete(f"scorer:job:{job_id}:lease"))

    async def finish(self, job_id: str) -> None:
        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.srem(PENDING, job_id)
                pipe.delete(f"scorer:job:{job_id}:rows", f"scorer:job:{job_id}:lease")
                await pipe.execute()

        await self._call(write())


class JobRunner:
    """Runs jobs in the background through the same scoring path as /batch, chunk by chunk."""

    def __init__(self, store: JobStore, score_rows: Any, lease_s: float = 30.0) -> None:
        self.store = store
        self.score_rows = score_rows  # async (rows) -> list[dict]
        self.lease_s = lease_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # Final records this replica could not write (store down): still answered, written back later.
        self._unsaved: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="job-sweeper")

    async def create(self, rows: list[dict[str, Any]]) -> str:
        job_id = uuid.uuid4().hex
        record = {"job_id": job_id, "status": "queued", "total": len(rows), "done": 0,
                  "created": time.time(), "results": None, "error": None}
        await self.store.enqueue(job_id, record, rows)
        await self.store.claim(job_id, self.lease_s)
        self._launch(job_id, record, rows)
        return job_id

    def _launch(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        task = asyncio.create_task(self._run(job_id, record, rows))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _run(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        results: list[dict[str, Any]] = []
        record["status"] = "running"
        try:
            for start in range(0, len(rows), CHUNK_ROWS):
                results.extend(await self._score_chunk(rows[start : start + CHUNK_ROWS]))
                record["done"] = len(results)
                await self.store.put(job_id, record)
                await self.store.renew(job_id, self.lease_s)
            record.update(status="done", results=results, finished=time.time())
        except JobStoreUnavailable as exc:
            log.error("job %s failed: job store unavailable", job_id)
            record.update(status="failed", error=exc.message)
        except Exception as exc:
            log.error("job %s failed: %s", job_id, type(exc).__name__)
            record.update(status="failed", error=f"{type(exc).__name__}: scoring stopped")
        await self._save_final(job_id, record)

    async def _score_chunk(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A full queue makes a job wait (interactive requests get 429 instead); it never fails the job."""
        pause = 0.05
        while True:
            try:
                chunk: list[dict[str, Any]] = await self.score_rows(rows)
                return chunk
            except Overloaded:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _save_final(self, job_id: str, record: dict[str, Any]) -> None:
        try:
            await self.store.put(job_id, record)
            await self.store.finish(job_id)
        except JobStoreUnavailable:
            self._unsaved[job_id] = record
            while len(self._unsaved) > UNSAVED_LIMIT:
                self._unsaved.popitem(last=False)
        else:
            self._unsaved.pop(job_id, None)

    async def get(self, job_id: str) -> dict[str, Any]:
        local = self._unsaved.get(job_id)
        try:
            record = await self.store.get(job_id)
        except JobStoreUnavailable:
            if local is not None:
                return local
            raise
        if record is not None and record["status"] in TERMINAL:
            self._unsaved.pop(job_id, None)
            return record
        if local is not None:
            await self._save_final(job_id, local)  # the store is back: write the outcome it missed
            return local
        if record is None:
            raise JobNotFound(f"no job {job_id!r}")
        return record

    async def _sweep(self) -> None:
        """Take over pending jobs whose lease lapsed; at start-up this resumes jobs of a stopped process."""
        while True:
            try:
                for job_id in await self.store.pending():
                    if job_id not in self._tasks and await self.store.claim(job_id, self.lease_s):
                        await self._take_over(job_id)
            except JobStoreUnavailable:
                pass  # counted by the store; the next sweep retries
            await asyncio.sleep(max(self.lease_s / 3, 0.1))

    async def _take_over(self, job_id: str) -> None:
        record, rows = await self.store.get(job_id), await self.store.rows(job_id)
        if record is None or rows is None or record["status"] in TERMINAL:
            await self.store.finish(job_id)  # finished (or expired) already: only the bookkeeping was left
            return
        log.warning("job %s re-queued: its runner stopped before finishing", job_id)
        metrics.JOBS_REQUEUED.inc()
        record.update(status="queued", done=0, results=None, error=None)
        await self.store.put(job_id, record)
        self._launch(job_id, record, rows)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        running = list(self._tasks)
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), *([self._sweeper] if self._sweeper else []),
                             return_exceptions=True)
        for job_id in running:  # hand the unfinished jobs to the next process at once, not after the lease
            with contextlib.suppress(JobStoreUnavailable):
                await self.store.release(job_id)
