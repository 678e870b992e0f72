"""Processes the scenarios drive: a redis-server that can be killed and restarted on the same port, and a
uvicorn server whose memory can be sampled."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
import redis

from tests.conftest import Server, free_port

NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
# What compose and k8s give the job store: never evict, every write in the append-only file before the reply.
JOB_STORE = ("--save", "", "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction")


class RedisProcess:
    """A loopback redis-server. By default without persistence: a restart comes back empty, like a lost node;
    `config` (e.g. JOB_STORE plus a `folder` for its files) makes it another kind of Redis."""

    def __init__(self, config: tuple[str, ...] = NO_PERSISTENCE, folder: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.config = config + (("--dir", str(folder)) if folder is not None else ())
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                         *self.config], stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, as when a node dies."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers, as with a hung node."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def start_server(env: dict[str, str], log_path: Path) -> Server:
    # One ORT thread: the CI machine has 2 cores shared with the load generator itself.
    server = Server({"SCORER_THREADS": "1", **env}, log_path)
    server.wait_ready()
    return server


class RssSampler:
    """Samples the server's resident memory every `every_s` in a background thread."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter() - started, self.process.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self.every_s)

    def growth_after(self, warm_up_s: float) -> int:
        """RSS at the end minus the lowest RSS seen after warm-up, in bytes."""
        after = [rss for at, rss in self.samples if at >= warm_up_s]
        return after[-1] - min(after) if len(after) >= 2 else 0

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)


def metric_value(url: str, line_prefix: str) -> float | None:
    """The value of the first /metrics line starting with `line_prefix` (name plus labels), if any."""
    for line in httpx.get(f"{url}/metrics/", timeout=10).text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return None
