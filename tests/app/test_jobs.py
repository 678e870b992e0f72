"""Jobs: progress through a queue smaller than the job, `running` from the first piece, per-key quota,
cancel and delete, owners, and a job-store outage that pauses a job instead of failing it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi.testclient import TestClient

from app.errors import JobStoreUnavailable
from app.job_store import MemoryJobStore
from app.jobs import JobRunner
from app.security import ANONYMOUS, Caller, key_digest
from tests.app.test_api import assert_error, make_client

ROWS = [{"id": n, "item_id": "item-a", "answer": "w " * (n % 3 + 1)} for n in range(50)]


def wait_for(client: TestClient, job_id: str, statuses: tuple[str, ...], headers: dict[str, str] | None = None,
              timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status: dict[str, Any] = client.get(f"/jobs/{job_id}", headers=headers).json()
        if status.get("status") in statuses:
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} not in {statuses}: {status}")


def test_a_job_larger_than_the_queue_makes_progress() -> None:
    with make_client(max_queue_rows=4, max_batch_rows=4) as client:
        job_id = client.post("/jobs", json={"answers": ROWS}).json()["job_id"]
        done = wait_for(client, job_id, ("done", "failed"))
        assert done["status"] == "done" and [row["id"] for row in done["results"]] == list(range(50))


def blocking_runner(store: Any, **limits: int) -> tuple[JobRunner, asyncio.Event, list[int]]:
    """A runner whose scoring waits for `go`; `pieces` counts the pieces it was asked to score."""
    go = asyncio.Event()
    pieces: list[int] = []

    async def score_rows(rows: list[dict[str, Any]], explain: bool) -> list[dict[str, Any]]:
        pieces.append(len(rows))
        await go.wait()
        return [{"id": row["id"], "score": 1} for row in rows]

    return JobRunner(store, score_rows, lease_s=1.0, piece_rows=8, **limits), go, pieces


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_status_is_running_while_the_first_piece_runs_and_queued_beyond_the_slots() -> None:
    async def scenario() -> tuple[str, str, str]:
        runner, go, pieces = blocking_runner(MemoryJobStore(), max_running=1)
        runner.start()
        first = await runner.create(ROWS[:20], ANONYMOUS)
        second = await runner.create(ROWS[:5], ANONYMOUS)
        await settle()
        states = ((await runner.get(first, ANONYMOUS))["status"], (await runner.get(second, ANONYMOUS))["status"])
        assert pieces == [8]
        go.set()
        for _ in range(200):
            if (await runner.get(second, ANONYMOUS))["status"] == "done":
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        return *states, (await runner.get(second, ANONYMOUS))["status"]

    assert asyncio.run(scenario()) == ("running", "queued", "done")


def test_per_key_quota_and_cancel() -> None:
    alice, bob = Caller("alice", admin=False), Caller("bob", admin=False)

    async def scenario() -> None:
        runner, go, _ = blocking_runner(MemoryJobStore(), max_rows_per_owner=30)
        runner.start()
        first = await runner.create(ROWS[:25], alice)
        for refused_rows, kind in ((ROWS[:10], "quota_exceeded"), (ROWS[:31], "payload_too_large")):
            try:
                await runner.create(refused_rows, alice)
            except Exception as error:
                assert getattr(error, "error_type", None) == kind
            else:
                raise AssertionError("over the quota, accepted")
        await runner.create(ROWS[:10], bob)  # another key's quota is its own
        await settle()
        cancelled = await runner.cancel(first, alice)
        assert cancelled["status"] == "cancelled" and cancelled["results"] is None
        await runner.create(ROWS[:10], alice)  # the cancelled job's rows no longer count
        go.set()
        await runner.stop()

    asyncio.run(scenario())


class FlakyStore(MemoryJobStore):
    """Fails every call while `down` is set, as a dead Redis would."""

    down = False

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in ("put", "get", "renew", "finish", "pending", "claim", "cancelled", "rows") and \
                MemoryJobStore.__getattribute__(self, "down"):
            async def failing(*_: Any, **__: Any) -> Any:
                raise JobStoreUnavailable("job store unavailable (ConnectionError); retry shortly")
            return failing
        return attribute


def test_a_store_outage_pauses_a_job_instead_of_failing_it() -> None:
    async def scenario() -> tuple[str, str, int]:
        store = FlakyStore()
        runner, go, _ = blocking_runner(store)
        runner.start()
        job_id = await runner.create(ROWS, ANONYMOUS)
        await settle()
        store.down = True
        go.set()
        await asyncio.sleep(0.5)  # the job finishes scoring while the store is down
        during = (await runner.get(job_id, ANONYMOUS))["status"]  # answered from the runner's memory
        store.down = False
        for _ in range(300):
            record = await store.get(job_id)
            if record is not None and record["status"] == "done":
                break
            await asyncio.sleep(0.01)
        await runner.stop()
        assert record is not None
        return during, record["status"], len(record["results"])

    assert asyncio.run(scenario()) == ("done", "done", 50)


def test_jobs_belong_to_the_key_that_created_them() -> None:
    keys = {"alice": "k-alice", "bob": "k-bob"}
    auth = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    admin = {"Authorization": "Bearer k-admin"}
    with make_client(api_keys_sha256=[key_digest(key) for key in keys.values()],
                     admin_keys_sha256=[key_digest("k-admin")]) as client:
        job_id = client.post("/jobs", json={"answers": ROWS[:5]}, headers=auth["alice"]).json()["job_id"]
        assert wait_for(client, job_id, ("done",), auth["alice"])["done"] == 5
        assert_error(client.get(f"/jobs/{job_id}", headers=auth["bob"]), 404, "job_not_found")
        assert_error(client.delete(f"/jobs/{job_id}", headers=auth["bob"]), 404, "job_not_found")
        assert client.get(f"/jobs/{job_id}", headers=admin).json()["status"] == "done"
        deleted = client.delete(f"/jobs/{job_id}", headers=auth["alice"]).json()
        assert deleted["status"] == "deleted" and deleted["results"] is None
        assert client.get(f"/jobs/{job_id}", headers=auth["alice"]).json()["status"] == "deleted"
        assert "owner" not in deleted
