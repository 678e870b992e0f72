"""`python -m bench.first_answer` (`make first-answer`): from a fresh clone to the first scored answer, and to
every item ready, timed as a newcomer meets it.

Clones this repository's committed HEAD next to it (a sibling of ../shared, so the data set resolves), runs
`make serve` there on a free port with a clean environment, and records when each phase started (from the
Makefile's `==` lines), when `POST /score/asap-01` first answered 200, and when `GET /items` stopped listing
items as `preparing`. Writes bench/results/first_answer.json. Standard library only: it runs before any venv.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "first_answer.json"
PHASES = {"== installing the serving": "install", "== exporting the default": "export_default",
          "== serving on": "serve_start"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.first_answer", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument("--timeout-s", type=float, default=3600)
    parser.add_argument("--cold-pip", action="store_true",
                        help="PIP_NO_CACHE_DIR=1: every package downloaded again, as on a machine never used before")
    args = parser.parse_args(argv)
    clone = REPO.parent / f"first-answer-{int(time.time())}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    marks: dict[str, float] = {}
    started = time.monotonic()
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    if args.cold_pip:
        env["PIP_NO_CACHE_DIR"] = "1"
    serve = subprocess.Popen(["make", "serve", f"PORT={port}"], cwd=clone, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log = clone.parent / f"{clone.name}.log"

    def read_output() -> None:
        assert serve.stdout is not None
        with log.open("w") as out:
            for line in serve.stdout:
                out.write(f"{time.monotonic() - started:8.1f} {line}")
                out.flush()
                for prefix, phase in PHASES.items():
                    if line.startswith(prefix) and phase not in marks:
                        marks[phase] = time.monotonic() - started

    threading.Thread(target=read_output, daemon=True).start()
    first_answer = all_ready = None
    items: list[dict[str, Any]] = []
    try:
        while time.monotonic() - started < args.timeout_s and serve.poll() is None:
            if first_answer is None:
                status, _ = request(f"{url}/score/asap-01", {"answer": "The acid rain dissolves the limestone."})
                if status == 200:
                    first_answer = time.monotonic() - started
                    print(f"first answer after {first_answer:.1f} s", flush=True)
            else:
                status, body = request(f"{url}/items")
                if status == 200 and body and not any(item["status"] == "preparing" for item in body):
                    items, all_ready = body, time.monotonic() - started
                    print(f"all {len(items)} items ready after {all_ready:.1f} s", flush=True)
                    break
            time.sleep(0.5)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=60)
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
        "machine": platform.platform(), "clone_to_first_answer_s": first_answer,
        "clone_to_all_items_ready_s": all_ready, "items_ready": len(items),
        "phase_started_at_s": marks,
        "pip_cache": "off (every package downloaded)" if args.cold_pip else "as this machine left it",
        "note": "the torch wheel is a local file on these machines (see ../shared/notes/toolchain.md)",
    }
    results = json.loads(RESULT.read_text()) if RESULT.is_file() else {}
    results["cold_pip" if args.cold_pip else "warm_pip"] = result
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(clone, ignore_errors=True)
    return 0 if first_answer is not None else 1


if __name__ == "__main__":
    sys.exit(main())
