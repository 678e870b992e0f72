"""Scenario 10: HTTP edges — HEAD, trailing slashes, the Bearer scheme's case, slow headers, a clean exit."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.security import check_key, key_digest
from tests.conftest import Server
from tests.reliability.harness import start_server
from tests.reliability.report import ResultsTable, Row

pytestmark = pytest.mark.reliability
KEY = "edge-key-" + "e" * 20
HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def edge_server(tiny_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_API_KEYS_SHA256": json.dumps([key_digest(KEY)]),
           "SCORER_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)}
    server = start_server(env, tmp_path_factory.mktemp("edges") / "server.log")
    yield server
    if server.process.poll() is None:
        server.stop()


def test_head_slash_and_scheme_case(edge_server: Server) -> None:
    key = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=edge_server.url, timeout=30) as client:
        for path in ("/health/ready", "/health/live", "/items", "/metrics/"):
            got, head = client.get(path, headers=key), client.head(path, headers=key)
            assert head.status_code == got.status_code == 200, (path, head.status_code)
            assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]
        for slashed, plain in (("/items/", "/items"), ("/health/ready/", "/health/ready"), ("/metrics", "/metrics/")):
            got = client.get(slashed, headers=key)
            assert got.status_code == 200 and not got.is_redirect, (slashed, got.status_code)
            assert got.headers["content-type"] == client.get(plain, headers=key).headers["content-type"]
        answer = {"answer": "acid rain reacts with marble"}
        for scheme in ("bearer", "BEARER", "Bearer"):
            got = client.post("/score/item-a/", json=answer, headers={"Authorization": f"{scheme} {KEY}"})
            assert got.status_code == 200, (scheme, got.text)
        assert client.post("/score/item-a", json=answer, headers={"Authorization": "Basic " + KEY}).status_code == 401


def test_bearer_scheme_is_case_insensitive_and_needs_a_key() -> None:
    digest = key_digest(KEY)
    assert check_key(f"bEaReR {KEY}", [digest], [], need_admin=False).admin is False
    for bad in ("bearer", "bearer ", KEY, f"Token {KEY}"):
        with pytest.raises(Exception, match="API key"):
            check_key(bad, [digest], [], need_admin=False)


def test_slow_headers_are_closed(edge_server: Server, results_table: ResultsTable) -> None:
    """20 slowloris connections: a header line every 0.5 s, never the blank line that ends them."""
    sockets = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", edge_server.port), timeout=1)
        sock.sendall(b"POST /score/item-a HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    closed: dict[int, float] = {}
    started = time.monotonic()
    while len(closed) < len(sockets) and time.monotonic() - started < HEADER_TIMEOUT_S * 4:
        for n, sock in enumerate(sockets):
            if n in closed:
                continue
            try:
                sock.sendall(f"X-Slow-{n}: {time.monotonic()}\r\n".encode())
                sock.setblocking(False)
                if sock.recv(1) == b"":
                    closed[n] = time.monotonic() - started
            except BlockingIOError:
                pass
            except OSError:
                closed[n] = time.monotonic() - started
            finally:
                sock.setblocking(True)
        time.sleep(0.5)
    for sock in sockets:
        sock.close()
    ready = httpx.get(edge_server.url + "/health/ready", timeout=5).status_code
    ok = len(closed) == len(sockets) and ready == 200
    results_table.add(Row("10a. slow headers closed", len(sockets), 0, 0, float("nan"), "pass" if ok else "FAIL",
                          f"{len(closed)} of {len(sockets)} slowloris connections closed, the last "
                          f"{max(closed.values(), default=float('nan')):.1f} s in (SCORER_HEADER_TIMEOUT_S="
                          f"{HEADER_TIMEOUT_S:g}); the service stayed ready"))
    assert len(closed) == len(sockets), f"only {len(closed)} of {len(sockets)} closed"
    assert max(closed.values()) < HEADER_TIMEOUT_S + 2.5
    assert ready == 200


def test_sigterm_without_drain_exits_zero(tiny_artifacts: Path, tmp_path: Path, results_table: ResultsTable) -> None:
    server = start_server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_DRAIN_DELAY_S": "0"},
                          tmp_path / "server.log")
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(timeout=60)
    results_table.add(Row("10b. SIGTERM, drain 0: exit status", 1, 0, 0, float("nan"),
                          "pass" if status == 0 else "FAIL", f"exit status {status} (0 expected)"))
    assert status == 0
