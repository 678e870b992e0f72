"""Scenario 4: bad input — a property-based run over the service's own OpenAPI schema (schemathesis), then
the named hostile cases. Never a 5xx; every error in the documented `{"error", "error_type"}` shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from tests.conftest import Server
from tests.reliability.harness import start_server
from tests.reliability.loadgen import percentile
from tests.reliability.report import ResultsTable, Row

pytestmark = pytest.mark.reliability
EXAMPLES_PER_OPERATION = 25  # per generation mode (valid, then invalid); derandomised: the same cases in CI


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts)}, tmp_path_factory.mktemp("bad-input") / "log")
    yield server
    server.stop()


def error_shape_problem(status: int, content: bytes) -> str | None:
    """None when a 4xx/5xx body is exactly {"error": str, "error_type": str}."""
    if status < 400:
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return f"{status}: body is not JSON"
    if not (isinstance(body, dict) and set(body) == {"error", "error_type"}
            and all(isinstance(value, str) and value for value in body.values())):
        return f"{status}: body {str(body)[:120]} is not the error shape"
    return None


@dataclass
class Tally:
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    shape_errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def record(self, label: str, status: int, content: bytes, latency_s: float) -> None:
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies_ms.append(latency_s * 1000)
        if status >= 500:
            self.server_errors.append(f"{label} → {status} {content[:200]!r}")
        problem = error_shape_problem(status, content)
        if problem is not None:
            self.shape_errors.append(f"{label}: {problem}")


def test_schemathesis_over_openapi(server: Server, results_table: ResultsTable) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                                 derandomize=True, phases=[Phase.explicit, Phase.generate],
                                 suppress_health_check=list(HealthCheck))
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                response = case.call(base_url=server.url, timeout=30)
                tally.record(f"{case.method} {case.formatted_path}", response.status_code, response.content,
                             response.elapsed)

            try:
                call()
            except hypothesis.errors.Unsatisfiable:
                # No input of this operation can be made invalid (e.g. GET /health/live takes none).
                assert mode is GenerationMode.NEGATIVE, f"no valid request for {operation.label}"
    ok = tally.requests > 100 and not tally.server_errors and not tally.shape_errors
    results_table.add(Row("4a. schemathesis over /openapi.json", tally.requests, len(tally.server_errors), 0,
                          percentile(tally.latencies_ms, 0.99), "pass" if ok else "FAIL",
                          f"{len(operations)} operations × (valid + invalid) × {EXAMPLES_PER_OPERATION} examples; "
                          f"statuses {dict(sorted(tally.statuses.items()))}; "
                          f"{len(tally.shape_errors)} errors outside the documented shape"))
    assert tally.requests > 100
    assert not tally.server_errors, tally.server_errors[:5]
    assert not tally.shape_errors, tally.shape_errors[:5]


CANARY = "zebra-canary-7f3a"


def named_cases() -> list[tuple[str, str, str, Any, set[int]]]:
    """(label, method, path, body: JSON value or raw bytes, allowed statuses)."""
    many_rows = [{"id": n, "item_id": "item-a", "answer": f"row {n}"} for n in range(10_000)]
    cases: list[tuple[str, str, str, Any, set[int]]] = [
        ("empty answer", "POST", "/score/item-a", {"answer": ""}, {422}),
        ("whitespace answer", "POST", "/score/item-a", {"answer": " \n\t\u00a0 "}, {422}),
        ("1 MB answer", "POST", "/score/item-a", {"answer": "x" * 1_000_000}, {422}),
        ("1 MB answer in a batch row", "POST", "/batch",
         {"answers": [{"id": 1, "item_id": "item-a", "answer": "y" * 1_000_000}]}, {200}),
        ("over the body limit", "POST", "/score/item-a", {"answer": "z" * 3_000_000}, {413}),
        ("invalid UTF-8", "POST", "/score/item-a", b'{"answer": "caf\xc3\x28 \xff\xfe"}', {400, 422}),
        ("not JSON", "POST", "/score/item-a", b"answer=hello", {400, 422}),
        ("truncated JSON", "POST", "/batch", b'{"answers": [{"id": 1, "item_id": "item-a", "ans', {400, 422}),
        ("control characters", "POST", "/score/item-a",
         {"answer": f"acid\x00 rain\x07\x1b[31m marble\u202e\ufeff {CANARY}"}, {200}),
        ("only control characters", "POST", "/score/item-a", {"answer": "\x00\x01\x02"}, {200, 422}),
        ("lone surrogate escape", "POST", "/score/item-a", b'{"answer": "\\ud800 rain"}', {422}),
        ("lone surrogate in a batch row", "POST", "/batch", b'{"answers": [{"id": 1, "item_id": "item-a", '
         b'"answer": "\\udfff"}, {"id": 2, "item_id": "item-a", "answer": "acid rain"}]}', {200}),
        ("10,000-row batch", "POST", "/batch", {"answers": many_rows}, {413}),
        ("unknown item", "POST", "/score/no-such-item", {"answer": "acid rain"}, {404}),
        ("unknown item in a batch row", "POST", "/batch",
         {"answers": [{"id": 1, "item_id": "no-such-item", "answer": "acid rain"}]}, {200}),
        ("upper-case item id", "POST", "/score/ITEM-A", {"answer": "acid rain"}, {404}),
        ("very long item id", "POST", "/score/" + "a" * 5000, {"answer": "acid rain"}, {404, 414, 422}),
        ("duplicate ids in a batch", "POST", "/batch", {"answers": [
            {"id": "s1", "item_id": "item-a", "answer": "acid rain reacts with marble"},
            {"id": "s1", "item_id": "item-b", "answer": "idk"}]}, {200}),
        ("answer is a number", "POST", "/score/item-a", {"answer": 5}, {422}),
        ("answer is null", "POST", "/score/item-a", {"answer": None}, {422}),
        ("answers is a string", "POST", "/score/item-a", {"answers": "acid rain"}, {422}),
        ("answers holds numbers", "POST", "/score/item-a", {"answers": [1, 2]}, {422}),
        ("both answer and answers", "POST", "/score/item-a", {"answer": "a", "answers": ["b"]}, {422}),
        ("top-level array", "POST", "/score/item-a", ["acid rain"], {422}),
        ("top-level string", "POST", "/batch", "acid rain", {422}),
        ("batch answers is an object", "POST", "/batch", {"answers": {"id": 1}}, {422}),
        ("batch id is null", "POST", "/batch", {"answers": [{"id": None, "item_id": "item-a", "answer": "x"}]},
         {422}),
        ("batch item_id is a number", "POST", "/batch", {"answers": [{"id": 1, "item_id": 7, "answer": "x"}]},
         {200}),
        ("batch answer is a list", "POST", "/batch",
         {"answers": [{"id": 1, "item_id": "item-a", "answer": ["x"]}]}, {200}),
        ("job with wrong types", "POST", "/jobs", {"answers": [{"id": [], "item_id": 1}]}, {422}),
        ("job id path-like", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", None, {404}),
    ]
    for item_id in ("../../etc/passwd", "..", "item-a/../item-b", "item-a%00", "%2e%2e%2fmanifest.json",
                    "items\\item-a", "item-a;rm -rf", "~root"):
        # Percent-encoded whole: the client must not resolve "../" itself, the server has to cope.
        cases.append((f"path-like item id {item_id!r}", "POST", f"/score/{quote(item_id, safe='')}",
                      {"answer": "acid rain"}, {404, 422}))
        cases.append((f"path-like item id {item_id!r} in a batch row", "POST", "/batch",
                      {"answers": [{"id": 1, "item_id": item_id, "answer": "acid rain"}]}, {200}))
    return cases


def test_named_bad_inputs(server: Server, results_table: ResultsTable) -> None:
    tally = Tally()
    wrong_status: list[str] = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for label, method, path, body, allowed in named_cases():
            content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
            response = client.request(method, path, content=content, headers={"content-type": "application/json"})
            tally.record(label, response.status_code, response.content, response.elapsed.total_seconds())
            if response.status_code not in allowed:
                wrong_status.append(f"{label}: {response.status_code} not in {sorted(allowed)}: "
                                    f"{response.content[:160]!r}")
            if response.status_code == 200 and path == "/batch":
                rows = response.json()["results"]
                sent = (json.loads(body) if isinstance(body, bytes) else body)["answers"]
                if [row["id"] for row in rows] != [row["id"] for row in sent]:
                    wrong_status.append(f"{label}: rows not answered once each, in order")
        duplicate = client.post("/batch", json={"answers": [
            {"id": "s1", "item_id": "item-a", "answer": "acid rain reacts with marble"},
            {"id": "s1", "item_id": "item-b", "answer": "idk"}]}).json()["results"]
        alone = [client.post("/score/item-a", json={"answer": "acid rain reacts with marble"}).json(),
                 client.post("/score/item-b", json={"answer": "idk"}).json()]
    duplicates_ok = [(r["item_id"], r["score"]) for r in duplicate] == [(r["item_id"], r["score"]) for r in alone]
    ok = not tally.server_errors and not tally.shape_errors and not wrong_status and duplicates_ok
    results_table.add(Row("4b. named bad inputs", tally.requests, len(tally.server_errors), 0,
                          percentile(tally.latencies_ms, 0.99), "pass" if ok else "FAIL",
                          "empty, whitespace, 1 MB, over-limit body, invalid UTF-8, control characters, "
                          "10,000-row batch, unknown and path-like item ids, wrong JSON types, duplicate batch "
                          f"ids; statuses {dict(sorted(tally.statuses.items()))}"))
    assert not tally.server_errors, tally.server_errors
    assert not tally.shape_errors, tally.shape_errors
    assert not wrong_status, wrong_status
    assert duplicates_ok, "rows with the same id must each be answered, in order, as when sent alone"
