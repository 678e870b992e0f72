"""Scenario 13: version switches of an ensemble item under load — rollback goes to the previous served
configuration, and no request in flight fails while the item changes members."""

from __future__ import annotations

import concurrent.futures
import copy
import json
import threading
from pathlib import Path

import httpx
import pytest

from core.manifest import single_entry
from tests.reliability.harness import start_server
from tests.reliability.report import ResultsTable, Row

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
ITEM = "asap-01"


def _with_history(committed: Path, root: Path) -> str:
    """The committed export (linked, not copied) whose manifest lists two earlier configurations of the item,
    newest first: its first member alone (what a staged `make serve` served before the ensemble) and an
    earlier ensemble (the same members under another version name)."""
    root.mkdir()
    for path in committed.iterdir():
        if path.name != "manifest.json":
            (root / path.name).symlink_to(path)
    manifest = json.loads((committed / "manifest.json").read_text())
    current = manifest["items"][ITEM]
    earlier = {**copy.deepcopy(current), "version": "ens-earlier"}
    manifest.setdefault("history", {})[ITEM] = [single_entry(current), earlier]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(current["version"])


def test_switches_under_load_lose_nothing(committed_artifacts: Path, tmp_path: Path,
                                          results_table: ResultsTable) -> None:
    ensemble_version = _with_history(committed_artifacts, tmp_path / "onnx")
    single_version = json.loads((tmp_path / "onnx" / "manifest.json").read_text())["history"][ITEM][0]["version"]
    server = start_server({"SCORER_ARTIFACTS": str(tmp_path / "onnx")}, tmp_path / "server.log")
    stop = threading.Event()

    def hammer(worker: int) -> list[tuple[int, str]]:
        seen = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            n = 0
            while not stop.is_set():
                n += 1  # unique answers: each one is really scored, none comes from the duplicate cache
                reply = client.post(f"/score/{ITEM}", json={"answer": f"worker {worker} answer {n}: vinegar"})
                seen.append((reply.status_code, reply.json().get("adapter_version", reply.text)))
        return seen

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            loads = [pool.submit(hammer, worker) for worker in range(4)]
            switches = []
            with httpx.Client(base_url=server.url, timeout=120) as admin:
                for action in ("rollback", "rollback", "reload"):  # -> earlier ensemble -> single head -> back
                    switches.append(admin.post(f"/admin/items/{ITEM}/{action}").json())
                    threading.Event().wait(1.0)
            stop.set()
            replies = [reply for load in loads for reply in load.result()]
    finally:
        stop.set()
        server.stop()
    failed = [reply for reply in replies if reply[0] != 200]
    versions = [switch["adapter_version"] for switch in switches]
    expected = ["ens-earlier", single_version, ensemble_version]
    ok = not failed and versions == expected and switches[1]["combine"] == "single"
    results_table.add(Row("13. ensemble rollback / rollback / reload under load", len(replies), len(failed), 0,
                          float("nan"), "pass" if ok else "FAIL",
                          f"{len(replies)} /score requests across three switches, {len(failed)} failed; rollback "
                          f"went {ensemble_version} → {versions[0]} (the earlier ensemble, not the single head), then "
                          f"→ {versions[1]} ({switches[1]['combine']}, said in the response), reload → {versions[2]}"))
    assert not failed, failed[:5]
    assert versions == expected, switches
    assert [switch["replaced"] for switch in switches] == [ensemble_version, "ens-earlier", single_version]
    assert switches[0]["combine"] == "mean_probabilities" and switches[1]["combine"] == "single"
