"""Asynchronous scoring jobs for large class sets: in process memory, or in Redis (any replica answers)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Protocol

from app import metrics
from app.errors import JobNotFound

log = logging.getLogger("scorer.jobs")
CHUNK_ROWS = 256


class JobStore(Protocol):
    async def put(self, job_id: str, record: dict[str, Any]) -> None: ...

    async def get(self, job_id: str) -> dict[str, Any] | None: ...


class MemoryJobStore:
    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Any]] = {}

    async def put(self, job_id: str, record: dict[str, Any]) -> None:
        self._jobs[job_id] = record

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.get(job_id)


class RedisJobStore:
    def __init__(self, client: Any, ttl_s: int) -> None:
        self.client = client
        self.ttl_s = ttl_s

    async def put(self, job_id: str, record: dict[str, Any]) -> None:
        await self.client.set(f"scorer:job:{job_id}", json.dumps(record), ex=self.ttl_s)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            raw = await self.client.get(f"scorer:job:{job_id}")
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            raise JobNotFound(f"job store unavailable ({type(exc).__name__})") from exc
        return json.loads(raw) if raw else None


class JobRunner:
    """Runs jobs in the background through the same scoring path as /batch, chunk by chunk."""

    def __init__(self, store: JobStore, score_rows: Any) -> None:
        self.store = store
        self.score_rows = score_rows  # async (rows) -> list[dict]
        self._tasks: set[asyncio.Task[None]] = set()

    async def create(self, rows: list[dict[str, Any]]) -> str:
        job_id = uuid.uuid4().hex
        record = {"job_id": job_id, "status": "queued", "total": len(rows), "done": 0,
                  "created": time.time(), "results": None, "error": None}
        await self.store.put(job_id, record)
        task = asyncio.create_task(self._run(job_id, record, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_id

    async def _run(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        results: list[dict[str, Any]] = []
        record["status"] = "running"
        try:
            for start in range(0, len(rows), CHUNK_ROWS):
                results.extend(await self.score_rows(rows[start : start + CHUNK_ROWS]))
                record["done"] = len(results)
                await self.store.put(job_id, record)
            record.update(status="done", results=results, finished=time.time())
        except Exception as exc:
            log.error("job %s failed: %s", job_id, type(exc).__name__)
            record.update(status="failed", error=f"{type(exc).__name__}: scoring stopped")
        try:
            await self.store.put(job_id, record)
        except Exception:
            metrics.REDIS_ERRORS.inc()

    async def get(self, job_id: str) -> dict[str, Any]:
        record = await self.store.get(job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id!r}")
        return record

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
