"""Scenario 5: access — keys, admin separation, digests only, no answer text in logs, bounded metric labels."""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.errors import Unauthorized
from app.security import check_key, key_digest
from tests.conftest import Server
from tests.reliability.harness import start_server
from tests.reliability.report import ResultsTable, Row

pytestmark = pytest.mark.reliability
SCORING_KEY, ADMIN_KEY = "scoring-key-" + "s" * 20, "admin-key-" + "a" * 20
CANARY = "quokka-canary-5d1e"  # inside answers only: must never reach the log


@pytest.fixture(scope="module")
def keyed_server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_LOG_LEVEL": "debug",  # the chattiest setting
           "SCORER_API_KEYS_SHA256": json.dumps([key_digest(SCORING_KEY)]),
           "SCORER_ADMIN_KEYS_SHA256": json.dumps([key_digest(ADMIN_KEY)])}
    server = start_server(env, tmp_path_factory.mktemp("access") / "server.log")
    yield server
    server.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_and_admin_separation(keyed_server: Server, tiny_artifacts: Path, tmp_path: Path,
                                   results_table: ResultsTable) -> None:
    url = keyed_server.url
    answer = {"answer": "acid rain reacts with marble"}
    row = {"answers": [{"id": 1, "item_id": "item-a", "answer": "acid rain"}]}
    checks: list[tuple[str, int, int]] = []  # (label, expected, got)
    with httpx.Client(base_url=url, timeout=30) as client:
        for label, method, path, body in [("score", "POST", "/score/item-a", answer), ("batch", "POST", "/batch", row),
                                          ("jobs", "POST", "/jobs", row), ("items", "GET", "/items", None),
                                          ("job", "GET", "/jobs/abc", None)]:
            for who, headers, expected in [("no key", {}, 401), ("wrong key", bearer("nope"), 401),
                                           ("not bearer", {"Authorization": SCORING_KEY}, 401)]:
                got = client.request(method, path, json=body, headers=headers)
                checks.append((f"{label}, {who}", expected, got.status_code))
                assert got.json()["error_type"] == "unauthorized"
        checks.append(("score, scoring key", 200, client.post("/score/item-a", json=answer,
                                                               headers=bearer(SCORING_KEY)).status_code))
        checks.append(("score, admin key", 200, client.post("/score/item-a", json=answer,
                                                             headers=bearer(ADMIN_KEY)).status_code))
        for action in ("reload", "rollback"):
            path = f"/admin/items/item-a/{action}"
            forbidden = client.post(path, headers=bearer(SCORING_KEY))
            checks.append((f"{action}, scoring key", 403, forbidden.status_code))
            assert forbidden.json()["error_type"] == "forbidden"
            checks.append((f"{action}, no key", 401, client.post(path).status_code))
        checks.append(("reload, admin key", 200, client.post("/admin/items/item-a/reload",
                                                             headers=bearer(ADMIN_KEY)).status_code))
        checks.append(("readiness probe, no key", 200, client.get("/health/ready").status_code))
    # Only digests are configured: the plaintext keys are nowhere in the process's environment or log.
    environ = Path(f"/proc/{keyed_server.process.pid}/environ").read_bytes()
    plaintext_seen = any(key.encode() in environ or key in keyed_server.log_path.read_text()
                         for key in (SCORING_KEY, ADMIN_KEY))
    # A plaintext key pasted where a digest belongs is refused at start-up instead of silently never matching.
    env = {**os.environ, "SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_API_KEYS_SHA256": json.dumps([SCORING_KEY])}
    refused = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=120)
    mismatched = [check for check in checks if check[1] != check[2]]
    ok = (not mismatched and not plaintext_seen and refused.returncode != 0
          and SCORING_KEY not in refused.stderr + refused.stdout)
    results_table.add(Row("5a. keys: 401 / 403 / digests only", len(checks) + 1, 0, 0, float("nan"),
                          "pass" if ok else "FAIL",
                          f"{len(checks)} checks (no, wrong, non-Bearer key → 401 on every scoring route; scoring "
                          "key on admin → 403); plaintext keys absent from the process environment and log; a "
                          "plaintext key in SCORER_API_KEYS_SHA256 refuses to start without printing it"))
    assert not mismatched, mismatched
    assert not plaintext_seen
    assert refused.returncode != 0 and "SHA-256 digests" in refused.stderr + refused.stdout
    assert SCORING_KEY not in refused.stderr + refused.stdout, "the start-up error printed the key"


def test_key_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured digest is compared with hmac.compare_digest, whichever (if any) matches."""
    compared: list[tuple[str, str]] = []

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", spy)  # app.security calls hmac.compare_digest
    scoring = [key_digest(f"key-{n}") for n in range(5)]
    for key in ("key-0", "key-4", "no-such-key"):
        compared.clear()
        try:
            check_key(f"Bearer {key}", scoring, [], need_admin=False)
        except Unauthorized:
            assert key == "no-such-key"
        assert len(compared) == len(scoring), f"{key}: early exit after {len(compared)} comparisons"
        assert all(len(a) == len(b) == 64 for a, b in compared), "digests of equal length, never raw keys"


def test_no_answer_text_in_logs_and_bounded_metric_labels(keyed_server: Server,
                                                           results_table: ResultsTable) -> None:
    url, headers = keyed_server.url, bearer(ADMIN_KEY)
    texts = [f"{CANARY} acid rain", f"{CANARY} " + "x" * 30_000, f"\ud800 {CANARY}", f"  {CANARY}  "]
    requests = statuses_5xx = 0
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for text in texts:
            content = json.dumps({"answer": text}).encode()
            for path in ("/score/item-a", "/score/no-such-item"):
                requests += 1
                statuses_5xx += client.post(path, content=content, headers={"content-type": "application/json"}
                                            ).status_code >= 500
        rows = [{"id": n, "item_id": item, "answer": f"{CANARY} row {n}"}
                for n, item in enumerate(["item-a", "item-b", "no-such-item", 7])]
        for path in ("/batch", "/jobs"):
            requests += 1
            statuses_5xx += client.post(path, json={"answers": rows}).status_code >= 500
        # A burst of random item ids on every route that takes one, and random paths.
        random_ids = [secrets.token_hex(6) for _ in range(150)]
        for item_id in random_ids:
            for method, path, body in [("POST", f"/score/{item_id}", {"answer": "x"}),
                                       ("GET", f"/items/{item_id}", None),
                                       ("POST", f"/admin/items/{item_id}/reload", None),
                                       ("GET", f"/{item_id}", None)]:
                requests += 1
                statuses_5xx += client.request(method, path, json=body).status_code >= 500
            requests += 1
            statuses_5xx += client.post("/batch", json={"answers": [{"id": 1, "item_id": item_id, "answer": "x"}]}
                                        ).status_code >= 500
        scrape = client.get("/metrics/").text
    log = keyed_server.log_path.read_text()
    leaked_ids = [item_id for item_id in random_ids if item_id in scrape]
    item_labels = set(re.findall(r'item="([^"]*)"', scrape))
    endpoint_labels = set(re.findall(r'endpoint="([^"]*)"', scrape))
    series = [line for line in scrape.splitlines() if line.startswith("scorer_")]
    canary_in_log = log.count(CANARY)
    ok = (canary_in_log == 0 and not leaked_ids and item_labels <= {"item-a", "item-b"} and statuses_5xx == 0
          and all(label.startswith("/") or label == "other" for label in endpoint_labels) and len(series) < 600)
    results_table.add(Row("5b. no answer text in logs, bounded /metrics labels", requests, statuses_5xx, 0,
                          float("nan"), "pass" if ok else "FAIL",
                          f"canary answers through score/batch/jobs/error paths at log level debug: "
                          f"{canary_in_log} occurrences in the log; {len(random_ids)} random item ids × 5 routes: "
                          f"{len(leaked_ids)} in /metrics, item labels {sorted(item_labels)}, "
                          f"{len(endpoint_labels)} endpoint labels, {len(series)} scorer_* series"))
    assert canary_in_log == 0, "answer text reached the log"
    assert statuses_5xx == 0
    assert not leaked_ids and item_labels <= {"item-a", "item-b"}
    assert all(label.startswith("/") or label == "other" for label in endpoint_labels), endpoint_labels
    assert len(endpoint_labels) < 20 and len(series) < 600
