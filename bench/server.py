"""`python -m app` in a child process on a free loopback port, as `make serve` runs it: the one server
harness of the benchmarks and the tests (tests/conftest.py uses it too)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real uvicorn process serving the app; its log is kept for inspection."""

    def __init__(self, env: dict[str, str], log_path: Path, python: Path | None = None,
                 cwd: Path = REPO) -> None:
        """`python`/`cwd`: another interpreter (e.g. a serving-only venv) and where it imports `app` from."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {**os.environ, **env, "SCORER_HOST": "127.0.0.1", "SCORER_PORT": str(self.port)}
        self.process = subprocess.Popen([str(python or sys.executable), "-m", "app"], env=full_env, cwd=cwd,
                                        stdout=log_path.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
