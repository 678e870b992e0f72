"""Scenario 9: answers the model cannot read are refused or flagged, with the reason; and the edges of
access and HTTP: operator pages behind keys, 413 for chunked bodies, 408 for stalled ones, the request id on
early refusals, strict batch ids."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.security import key_digest
from tests.conftest import Server
from tests.reliability.harness import start_server
from tests.reliability.report import ResultsTable, Row

pytestmark = pytest.mark.reliability
KEY = "edge-key-" + "e" * 20
UNREADABLE = {"zero-width": "\u200b\u200c\u200d\u2060", "NUL and controls": "\x00\x01\x1f\x7f",
              "combining marks": "\u0301\u0308\u0323", "mixed invisibles": "\u200b \x00 \u0301"}


@pytest.fixture(scope="module")
def server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_BODY_TIMEOUT_S": "1",
                           "SCORER_MAX_BODY_BYTES": "4096",
                           "SCORER_API_KEYS_SHA256": json.dumps([key_digest(KEY)])},
                          tmp_path_factory.mktemp("edges") / "server.log")
    yield server
    server.stop()


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_unreadable_and_unknown_script_answers(server: Server, results_table: ResultsTable) -> None:
    refused = {name: httpx.post(f"{server.url}/score/item-a", json={"answer": text}, headers=AUTH)
               for name, text in UNREADABLE.items()}
    batch = httpx.post(f"{server.url}/batch", headers=AUTH, json={"answers": [
        {"id": 1, "item_id": "item-a", "answer": "\u200b\u200b"},
        {"id": 2, "item_id": "item-a", "answer": "acid rain dissolves marble"}]}).json()["results"]
    amharic = httpx.post(f"{server.url}/score/item-a", headers=AUTH, json={"answer": "ሰላም ዓለም ሰላም"}).json()
    english = httpx.post(f"{server.url}/score/item-a", headers=AUTH, json={"answer": "acid rain"}).json()
    kinds = {name: (response.status_code, response.json().get("error_type")) for name, response in refused.items()}
    ok = (all(kind == (422, "no_scorable_content") for kind in kinds.values())
          and batch[0]["error_type"] == "no_scorable_content" and batch[1]["score"] is not None
          and amharic["needs_review"] and "unknown_words" in amharic["review_reasons"]
          and "unknown_words" not in english["review_reasons"])
    results_table.add(Row("9a. unreadable and unknown-script answers", len(refused) + 3, 0, 0, float("nan"),
                          "pass" if ok else "FAIL",
                          f"{len(kinds)} answers of only zero-width/NUL/control/combining characters → "
                          f"{sorted(set(kinds.values()))}, in /batch the row alone; an answer in a script the "
                          f"vocabulary lacks (Amharic, all [UNK]) → 200, needs_review, reasons "
                          f"{amharic['review_reasons']}"))
    assert all(kind == (422, "no_scorable_content") for kind in kinds.values()), kinds
    assert batch[0]["error_type"] == "no_scorable_content" and batch[1]["score"] is not None
    assert amharic["needs_review"] and "unknown_words" in amharic["review_reasons"]
    assert "unknown_words" not in english["review_reasons"]


def raw(server: Server, request: bytes, pause_s: float = 0.0, then: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        if pause_s:
            time.sleep(pause_s)
            with contextlib.suppress(OSError):
                sock.sendall(then)
        reply = b""
        # The headers and the body may arrive in separate packets: read the body its content-length declares.
        while not _complete(reply):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return int(reply.split(b" ", 2)[1]), reply


def _complete(reply: bytes) -> bool:
    head, found, body = reply.partition(b"\r\n\r\n")
    if not found:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def test_access_and_http_edges(server: Server, results_table: ResultsTable) -> None:
    checks: dict[str, bool] = {}
    for path in ("/docs", "/redoc", "/openapi.json"):
        checks[f"{path} 401 without key"] = httpx.get(server.url + path).status_code == 401
        checks[f"{path} 200 with key"] = httpx.get(server.url + path, headers=AUTH).status_code == 200
    checks["/metrics open (documented default)"] = httpx.get(f"{server.url}/metrics/").status_code == 200
    head = (b"POST /batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
            b"\r\nContent-Type: application/json\r\nX-Request-ID: edge-1\r\n")
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
    status, reply = raw(server, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n")
    checks["chunked body over the limit → 413"] = status == 413 and b"payload_too_large" in reply
    checks["413 carries X-Request-ID"] = b"x-request-id: edge-1" in reply.lower()
    status, reply = raw(server, head + b"Content-Length: 99999\r\n\r\n")
    checks["declared over the limit → 413 with id"] = status == 413 and b"x-request-id: edge-1" in reply.lower()
    status, reply = raw(server, head + b"Content-Length: 100\r\n\r\n{\"answers\"", pause_s=2.0, then=b": []}")
    checks["stalled body → 408 request_timeout"] = status == 408 and b"request_timeout" in reply
    strict = httpx.post(f"{server.url}/batch", headers=AUTH,
                        json={"answers": [{"id": True, "item_id": "item-a", "answer": "x"}]})
    checks["batch id true → 422, not 1"] = strict.status_code == 422
    passed = sum(checks.values())
    results_table.add(Row("9b. access and HTTP edges", len(checks), 0, 0, float("nan"),
                          "pass" if passed == len(checks) else "FAIL",
                          f"{passed}/{len(checks)}: " + "; ".join(
                              name if ok else f"**{name} FAILED**" for name, ok in checks.items())))
    assert all(checks.values()), checks
