"""Load through real HTTP: concurrent clients against the service (what `make serve` runs), loopback only.

Each scenario is bounded in both time and requests. The duplicate-answer cache is switched off in the
server this module starts, so every request pays for inference.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import numpy as np

from bench.workload import Workload


async def _client(http: httpx.AsyncClient, make_request: Any, deadline: float, budget: list[int],
                  latencies: list[float], statuses: dict[int, int]) -> int:
    answers = 0
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        method, path, body, rows = make_request()
        started = time.perf_counter()
        try:
            response = await http.request(method, path, json=body)
            status = response.status_code
        except httpx.HTTPError:
            status = 0  # connection-level failure
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
        answers += rows if status == 200 else 0
    return answers


async def _run(url: str, make_request: Any, clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    budget = [max_requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        started = time.perf_counter()
        deadline = started + seconds
        answers = await asyncio.gather(*[_client(http, make_request, deadline, budget, latencies, statuses)
                                         for _ in range(clients)])
        elapsed = time.perf_counter() - started
    values = np.asarray(latencies) * 1000
    errors = sum(count for status, count in statuses.items() if status != 200)
    return {"clients": clients, "requests": len(latencies), "seconds": elapsed,
            "requests_per_s": len(latencies) / elapsed, "answers_per_s": sum(answers) / elapsed,
            "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "errors": errors, "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def http_scenarios(url: str, workload: Workload, clients: int, seconds: float, batch_rows: int,
                   max_requests: int) -> dict[str, Any]:
    rng = random.Random(21)

    def single() -> tuple[str, str, dict[str, Any], int]:
        item = rng.choice(workload.items)
        return "POST", f"/score/{item}", {"answer": rng.choice(workload.texts_of(item))}, 1

    def batch() -> tuple[str, str, dict[str, Any], int]:
        rows = [{"id": n, "item_id": item, "answer": text}
                for n, (item, text) in enumerate(workload.mixed(batch_rows, seed=rng.randrange(1 << 30)))]
        return "POST", "/batch", {"answers": rows}, batch_rows

    return {
        "single": asyncio.run(_run(url, single, clients, seconds, max_requests)),
        "batch": asyncio.run(_run(url, batch, max(2, clients // 4), seconds, max_requests)),
        "batch_rows": batch_rows,
    }
