"""Where job records live: process memory, or a Redis that must not evict them (any replica answers).

Redis layout: `scorer:job:<id>` (the record, JSON), `:rows` (the input rows until the job ends), `:lease`
(the replica running it), `:cancelled` (a flag any replica's runner sees), and `scorer:jobs:queue`, a sorted
set of unfinished jobs by creation time (the order they are started in). Every record carries a TTL: the
retention of a finished job's results (SCORER_JOB_TTL_S)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from app import metrics
from app.errors import JobStoreUnavailable
from app.redis_clients import Breaker

log = logging.getLogger("scorer.jobs")

QUEUE = "scorer:jobs:queue"
TERMINAL = ("done", "failed", "cancelled", "deleted")


def rows_left(record: dict[str, Any]) -> int:
    return 0 if record["status"] in TERMINAL else int(record["total"]) - int(record["done"])


class JobStore(Protocol):
    async def enqueue(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None: ...

    async def put(self, job_id: str, record: dict[str, Any]) -> None: ...

    async def get(self, job_id: str) -> dict[str, Any] | None: ...

    async def rows(self, job_id: str) -> list[dict[str, Any]] | None: ...

    async def pending(self) -> list[str]:
        """Unfinished jobs, oldest first."""
        ...

    async def rows_left_of(self, owner: str) -> int:
        """Rows of this owner's unfinished jobs not yet scored (the per-key limit)."""
        ...

    async def claim(self, job_id: str, lease_s: float) -> bool:
        """Take the job's lease; False when another runner holds it."""
        ...

    async def renew(self, job_id: str, lease_s: float) -> bool:
        """Extend the lease; False when another runner has taken the job over meanwhile."""
        ...

    async def release(self, job_id: str) -> None: ...

    async def finish(self, job_id: str) -> None:
        """Out of the queue; rows and lease dropped; the record stays until its TTL."""
        ...

    async def cancel(self, job_id: str) -> None: ...

    async def cancelled(self, job_id: str) -> bool: ...


class MemoryJobStore:
    """One process: jobs die with it (no Redis configured). Records expire after `ttl_s` like Redis keys."""

    def __init__(self, ttl_s: float = 7 * 24 * 3600) -> None:
        self.ttl_s = ttl_s
        self._jobs: dict[str, dict[str, Any]] = {}  # insertion order = creation order
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._claimed: set[str] = set()

    async def enqueue(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        expired_before = time.time() - self.ttl_s
        for old_id in list(self._jobs):
            if self._jobs[old_id]["created"] >= expired_before:
                break
            if old_id not in self._rows:  # an unfinished job is never expired under its runner
                del self._jobs[old_id]
        self._jobs[job_id] = record
        self._rows[job_id] = rows

    async def put(self, job_id: str, record: dict[str, Any]) -> None:
        self._jobs[job_id] = record

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return self._jobs.get(job_id)

    async def rows(self, job_id: str) -> list[dict[str, Any]] | None:
        return self._rows.get(job_id)

    async def pending(self) -> list[str]:
        return list(self._rows)

    async def rows_left_of(self, owner: str) -> int:
        return sum(rows_left(self._jobs[job_id]) for job_id in self._rows if self._jobs[job_id]["owner"] == owner)

    async def claim(self, job_id: str, lease_s: float) -> bool:
        if job_id in self._claimed or job_id not in self._rows:
            return False
        self._claimed.add(job_id)
        return True

    async def renew(self, job_id: str, lease_s: float) -> bool:
        return job_id in self._claimed

    async def release(self, job_id: str) -> None:
        self._claimed.discard(job_id)

    async def finish(self, job_id: str) -> None:
        self._rows.pop(job_id, None)
        self._claimed.discard(job_id)

    async def cancel(self, job_id: str) -> None:
        await self.finish(job_id)

    async def cancelled(self, job_id: str) -> bool:
        record = self._jobs.get(job_id)
        return record is not None and record["status"] in ("cancelled", "deleted")


class RedisJobStore:
    """Every failure surfaces as JobStoreUnavailable (503), never as a raw Redis exception (500)."""

    def __init__(self, client: Any, ttl_s: int, owner: str, breaker_s: float = 5.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.owner = owner  # this process, as lease holder
        # A hung job store costs one request its socket timeouts; while the breaker is open every other call
        # answers 503 at once (as the cache role does) instead of each waiting seconds.
        self.breaker = Breaker(breaker_s)

    async def _call(self, operation: Coroutine[Any, Any, Any]) -> Any:
        if not self.breaker.allowed():
            operation.close()
            raise JobStoreUnavailable("job store unavailable (recent failures); retry shortly")
        try:
            result = await operation
        except Exception as exc:
            metrics.REDIS_ERRORS.inc()
            if self.breaker.failed():
                log.warning("job store unavailable, /jobs answers 503 for %.0f s at a time: %s",
                            self.breaker.open_s, type(exc).__name__)
            raise JobStoreUnavailable(f"job store unavailable ({type(exc).__name__}); retry shortly") from exc
        if self.breaker.succeeded():
            log.warning("job store reachable again")
        return result

    async def enqueue(self, job_id: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(f"scorer:job:{job_id}", json.dumps(record), ex=self.ttl_s)
                pipe.set(f"scorer:job:{job_id}:rows", json.dumps(rows), ex=self.ttl_s)
                pipe.zadd(QUEUE, {job_id: record["created"]})
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
        members = await self._call(self.client.zrange(QUEUE, 0, -1))
        return [member.decode() if isinstance(member, bytes) else str(member) for member in members]

    async def rows_left_of(self, owner: str) -> int:
        job_ids = await self.pending()
        if not job_ids:
            return 0
        raws = await self._call(self.client.mget([f"scorer:job:{job_id}" for job_id in job_ids]))
        records = [json.loads(raw) for raw in raws if raw]
        return sum(rows_left(record) for record in records if record.get("owner") == owner)

    async def claim(self, job_id: str, lease_s: float) -> bool:
        lease = f"scorer:job:{job_id}:lease"
        return bool(await self._call(self.client.set(lease, self.owner, nx=True, px=int(lease_s * 1000))))

    async def renew(self, job_id: str, lease_s: float) -> bool:
        lease = f"scorer:job:{job_id}:lease"
        holder = await self._call(self.client.get(lease))
        if holder is not None and (holder.decode() if isinstance(holder, bytes) else holder) != self.owner:
            return False
        await self._call(self.client.set(lease, self.owner, px=int(lease_s * 1000)))
        return True

    async def release(self, job_id: str) -> None:
        await self._call(self.client.delete(f"scorer:job:{job_id}:lease"))

    async def finish(self, job_id: str) -> None:
        async def write() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(QUEUE, job_id)
                pipe.delete(f"scorer:job:{job_id}:rows", f"scorer:job:{job_id}:lease")
                await pipe.execute()

        await self._call(write())

    async def cancel(self, job_id: str) -> None:
        await self._call(self.client.set(f"scorer:job:{job_id}:cancelled", 1, ex=self.ttl_s))
        await self.finish(job_id)

    async def cancelled(self, job_id: str) -> bool:
        return bool(await self._call(self.client.exists(f"scorer:job:{job_id}:cancelled")))
