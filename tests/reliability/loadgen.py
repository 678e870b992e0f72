"""A bounded mixed-item load: single answers, several answers to one item, and cross-item batches.

Every request carries a unique X-Request-ID and is recorded exactly once (answered, refused, or lost on
the wire), so a run can be checked for lost and duplicated results and against a sequential reference."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.reliability.rawhttp import Connection, TransportError

# Distinct answers of different lengths (padding differs per micro-batch, results must not).
ANSWERS = [f"answer {n}: acid rain reacts with the marble" + " and the limestone dissolves" * (n % 7)
           for n in range(24)]


@dataclass(frozen=True)
class Planned:
    request_id: str
    path: str
    body: dict[str, Any]
    rows: list[tuple[str, str]]  # (item id, answer) in the order results must come back
    row_ids: list[str] | None = None  # /batch only


@dataclass
class Call:
    planned: Planned
    started: float
    latency: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    body: Any = None
    echoed_id: str | None = None
    retry_after: str | None = None
    transport_error: str | None = None
    server_ms: float | None = None  # the service's own x-process-time: excludes client-side queueing


def mixed_plan(items: list[str]) -> Callable[[int], Planned]:
    """Request n of the workload: half single answers, a quarter multi-answer, a quarter batches."""

    def plan(n: int) -> Planned:
        request_id = f"req-{n}"
        item = items[n % len(items)]
        kind = n % 4
        if kind in (0, 1):
            answer = ANSWERS[n % len(ANSWERS)]
            return Planned(request_id, f"/score/{item}", {"answer": answer}, [(item, answer)])
        if kind == 2:
            texts = [ANSWERS[(n + k) % len(ANSWERS)] for k in range(3)]
            return Planned(request_id, f"/score/{item}", {"answers": texts}, [(item, t) for t in texts])
        rows = [(items[(n + k) % len(items)], ANSWERS[(n * 7 + k) % len(ANSWERS)]) for k in range(6)]
        ids = [f"{request_id}-{k}" for k in range(len(rows))]
        body = {"answers": [{"id": i, "item_id": it, "answer": a} for i, (it, a) in zip(ids, rows, strict=True)]}
        return Planned(request_id, "/batch", body, rows, ids)

    return plan


@dataclass
class LoadRun:
    url: str
    plan: Callable[[int], Planned]
    concurrency: int
    duration_s: float
    max_requests: int = 1_000_000
    timeout_s: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    stop_issuing: threading.Event = field(default_factory=threading.Event)  # set: workers finish and stop
    calls: list[Call] = field(default_factory=list)

    def run(self) -> list[Call]:
        asyncio.run(self._main())
        return self.calls

    def in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    async def _main(self) -> None:
        counter = iter(range(self.max_requests))
        deadline = time.perf_counter() + self.duration_s
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        await asyncio.gather(*(self._worker(Connection(host, int(port), self.timeout_s), counter, deadline)
                               for _ in range(self.concurrency)))

    async def _worker(self, connection: Connection, counter: Any, deadline: float) -> None:
        while time.perf_counter() < deadline and not self.stop_issuing.is_set():
            n = next(counter, None)
            if n is None:
                break
            planned = self.plan(n)
            started = time.perf_counter()
            headers = {**self.headers, "x-request-id": planned.request_id}
            try:
                reply = await connection.post(planned.path, planned.body, headers)
            except TransportError as exc:
                self.calls.append(Call(planned, started, time.perf_counter() - started, None,
                                       transport_error=str(exc)))
                continue
            process_time = reply.headers.get("x-process-time", "")
            self.calls.append(Call(planned, started, time.perf_counter() - started, reply.status, reply.body,
                                   reply.headers.get("x-request-id"), reply.headers.get("retry-after"),
                                   server_ms=float(process_time.removesuffix("ms")) if process_time else None))
        await connection.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


Reference = dict[tuple[str, str], dict[str, Any]]


def sequential_reference(url: str, items: list[str], headers: dict[str, str] | None = None) -> Reference:
    """Each (item, answer) scored alone, one request at a time: what every loaded answer must equal."""
    reference: Reference = {}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        for item in items:
            for answer in ANSWERS:
                response = client.post(f"/score/{item}", json={"answer": answer})
                response.raise_for_status()
                reference[(item, answer)] = response.json()
    return reference


@dataclass
class Verdict:
    requests: int
    server_errors: int  # 5xx
    lost: int  # no HTTP answer, a request id answered twice or not echoed, or a missing/extra row
    wrong: int  # rows whose score differs from the sequential run
    statuses: dict[int, int]
    p50_ms: float
    p99_ms: float
    max_ms: float


def rows_of(call: Call) -> list[dict[str, Any]]:
    if call.planned.path == "/batch" or "answers" in call.planned.body:
        return list(call.body.get("results", [])) if isinstance(call.body, dict) else []
    return [call.body] if isinstance(call.body, dict) else []


def verify(calls: list[Call], reference: Reference, expect_error: Callable[[str], int | None] | None = None
           ) -> Verdict:
    """Check every answered row against the reference; `expect_error(item)` names items meant to fail."""
    statuses: dict[int, int] = {}
    seen: set[str] = set()
    lost = wrong = 0
    for call in calls:
        if call.status is None:
            lost += 1
            continue
        statuses[call.status] = statuses.get(call.status, 0) + 1
        if call.planned.request_id in seen or call.echoed_id != call.planned.request_id:
            lost += 1
        seen.add(call.planned.request_id)
        if call.status != 200:
            continue
        rows = rows_of(call)
        if len(rows) != len(call.planned.rows):
            lost += 1
            continue
        if call.planned.row_ids is not None and [r["id"] for r in rows] != call.planned.row_ids:
            lost += 1
        for (item, answer), row in zip(call.planned.rows, rows, strict=True):
            if expect_error is not None and expect_error(item) is not None:
                wrong += row.get("error_type") is None
                continue
            expected = reference[(item, answer)]
            same = (row.get("score") == expected["score"] and row.get("item_id") == item
                    and all(abs(a - b) <= 1e-4 for a, b in zip(row["probabilities"], expected["probabilities"],
                                                                 strict=True)))
            wrong += not same
    latencies = [call.latency * 1000 for call in calls if call.status is not None]
    return Verdict(len(calls), sum(n for status, n in statuses.items() if status >= 500), lost, wrong, statuses,
                   percentile(latencies, 0.50), percentile(latencies, 0.99), max(latencies, default=math.nan))
