"""`make image-check`: the CPU image built and used for real, then the compose stack around it.

1. builds the image (the public slim base, or one made from Debian packages where no registry answers);
2. runs it read-only with an API key, waits for /health/ready, scores the README's examples through
   `POST /score/{item}` and `POST /batch` and compares with the README's printed output, checks that a wrong
   key gets 401 and that no answer text reaches `docker logs`;
3. brings up compose (scorer, both Redis roles, Prometheus), runs a job to `done`, restarts the jobs Redis,
   reads the job again, waits for Prometheus to scrape the scorer, and takes the stack down with its volumes.
Everything it started is removed again (containers, networks, volumes, dangling images); image size and
start-to-ready time go to bench/results/image.json. Standard library only (it needs no virtual environment).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.docker_engine import LOCAL_BASE, REPO, base_image, docker_engine, fill_build_inputs, image_present, run
from bench.image_http import call, readme_examples, same_result, wait_ready

IMAGE = "lora-scorer:0.1.0"
CONTAINER = "lora-scorer-image-check"
PROJECT = "lora-scorer-check"
API_KEY, ADMIN_KEY = "image-check-key", "image-check-admin"
STAND_INS = {"lora-scorer-redis:bookworm": "redis.Dockerfile",
             "lora-scorer-prometheus:bookworm": "prometheus.Dockerfile"}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def build(base: str) -> dict[str, Any]:
    inputs = fill_build_inputs()
    print(f"building {IMAGE} on {base} (build inputs: {', '.join(inputs) or 'none'})")
    started = time.perf_counter()
    env_args = ["--build-arg", f"EXPORT_IMAGE={base}", "--build-arg", f"BASE_IMAGE={base}"]
    os.environ["DOCKER_BUILDKIT"] = "0"  # the classic builder: BuildKit's frontends come from a registry
    log = run("docker", "build", "-t", IMAGE, *env_args, str(REPO), timeout=3600)
    seconds = time.perf_counter() - started
    steps = log.count("\nStep ")
    cached = log.count("Using cache")
    print(f"built in {seconds:.0f} s ({cached} of {steps} steps from the cache)")
    size = int(run("docker", "image", "inspect", "-f", "{{.Size}}", IMAGE))
    sizes = run("docker", "run", "--rm", "--entrypoint", "du", IMAGE, "-sb", "/srv/artifacts", "/opt/venv")
    parts = {Path(path).name: int(n) for n, path in (line.split() for line in sizes.splitlines())}
    return {"base_image": base, "build_inputs": inputs, "build_s": round(seconds, 1), "build_steps": steps,
            "build_steps_cached": cached, "image_bytes": size, "artifacts_bytes": parts["artifacts"],
            "venv_bytes": parts["venv"]}


def check_container() -> dict[str, Any]:
    """The image alone: read-only, with a key; README examples answered as printed; 401; no answers in logs."""
    run("docker", "rm", "-f", CONTAINER, check=False, quiet=True)
    started = time.perf_counter()
    run("docker", "run", "-d", "--name", CONTAINER, "--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::8000",
        "-e", f"SCORER_API_KEYS_SHA256=[\"{_digest(API_KEY)}\"]", IMAGE)
    try:
        port = run("docker", "port", CONTAINER, "8000/tcp").split(":")[-1].strip()
        base = f"http://127.0.0.1:{port}"
        ready_s = wait_ready(base, started, timeout=180)
        print(f"ready {ready_s:.1f} s after docker run")
        answers: list[str] = []
        for example in readme_examples(REPO / "README.md"):
            status, body = call(base + example.path, example.body, API_KEY)
            assert status == 200, f"{example.path}: {status} {body}"
            same_result(example, body)
            answers += example.answers
            print(f"{example.path}: answered as the README shows")
        status, body = call(base + "/score/asap-01", {"answer": "a wrong key"}, "not-the-key")
        assert status == 401 and body["error_type"] == "unauthorized", (status, body)
        # the service logs to standard error: both streams of `docker logs`
        shown = subprocess.run(["docker", "logs", CONTAINER], capture_output=True, text=True, check=True)
        logs = shown.stdout + shown.stderr
        leaked = [answer for answer in answers if len(answer) >= 8 and answer in logs]  # "idk" may be a word of a log
        assert not leaked, f"answer text in docker logs: {leaked}"
        print(f"wrong key: 401; no answer text in {len(logs.splitlines())} log lines")
    finally:
        run("docker", "rm", "-f", CONTAINER, check=False, quiet=True)
    return {"ready_s": round(ready_s, 1)}


def check_compose(base: str) -> dict[str, Any]:
    """Scorer + both Redis roles + Prometheus: a job to done, surviving a restart of the jobs Redis."""
    files = ["-f", str(REPO / "docker-compose.yml")]
    if base == LOCAL_BASE:
        for tag, dockerfile in STAND_INS.items():
            if not image_present(tag):
                run("docker", "build", "-t", tag, "--build-arg", f"BASE_IMAGE={base}", "-f",
                    str(REPO / "deploy" / "offline" / dockerfile), str(REPO / "deploy" / "offline"))
        files += ["-f", str(REPO / "deploy" / "offline" / "compose.offline.yml")]
    os.environ.update(SCORER_API_KEY_SHA256=_digest(API_KEY), SCORER_ADMIN_KEYS_SHA256=f'["{_digest(ADMIN_KEY)}"]',
                      SCORER_HOST_PORT="18000", PROMETHEUS_HOST_PORT="19090")
    compose = ["docker-compose", "-p", PROJECT, *files]
    started = time.perf_counter()
    try:
        run(*compose, "up", "-d", "--no-build", "scorer", "redis", "redis-jobs", "prometheus", timeout=600)
        scorer = "http://127.0.0.1:18000"
        ready_s = wait_ready(scorer, started, timeout=240)
        shown = subprocess.run([*compose, "logs", "--no-color", "scorer"], capture_output=True, text=True, check=True)
        roles = re.search(r"duplicate cache \w+, jobs \w+", shown.stdout + shown.stderr)
        assert roles and roles[0] == "duplicate cache redis, jobs redis", f"scorer not on both Redis roles: {roles}"
        print(f"compose: scorer ready after {ready_s:.1f} s ({roles[0]})")
        rows = [{"id": n, "item_id": item, "answer": text} for n, (item, text) in enumerate(
            [("asap-01", "You need to know how much vinegar was used."), ("asap-05", "mRNA leaves the nucleus")] * 4)]
        status, accepted = call(scorer + "/jobs", {"answers": rows}, API_KEY)
        assert status == 202, (status, accepted)
        job = _until(lambda: call(f"{scorer}/jobs/{accepted['job_id']}", None, API_KEY), "done", 120)
        print(f"job {accepted['job_id']}: done, {len(job['results'])} rows")
        run(*compose, "restart", "redis-jobs", timeout=120)
        again = _until(lambda: call(f"{scorer}/jobs/{accepted['job_id']}", None, API_KEY), "done", 60)
        assert again["results"] == job["results"], "the job's results changed across the jobs Redis restart"
        print("jobs Redis restarted: the job is still readable, results unchanged")
        scraped = _scraped("http://127.0.0.1:19090", 90)
        print(f"Prometheus scrapes the scorer ({scraped})")
    finally:
        run(*compose, "down", "-v", "--remove-orphans", timeout=300, check=False)
        run("docker", "image", "prune", "-f", check=False, quiet=True)
    return {"compose_ready_s": round(ready_s, 1), "compose_check_s": round(time.perf_counter() - started, 1)}


def _until(fetch: Any, status: str, timeout: float) -> dict[str, Any]:
    """Polls a job until it has `status` (503s while a Redis comes back are retried)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        code, body = fetch()
        last = (code, body)
        if code == 200 and body.get("status") == status:
            return dict(body)
        time.sleep(0.5)
    raise AssertionError(f"job not {status} within {timeout} s: {last}")


def _scraped(prometheus: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    targets: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        code, body = call(prometheus + "/api/v1/targets", None, None)
        targets = body.get("data", {}).get("activeTargets", []) if code == 200 else []
        scorer = [t for t in targets if t.get("labels", {}).get("job") == "scorer"]
        if scorer and scorer[0].get("health") == "up":
            return f"target {scorer[0]['scrapeUrl']} up"
        time.sleep(2)
    raise AssertionError(f"Prometheus did not scrape the scorer within {timeout} s: {targets}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.image_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "image.json")
    parser.add_argument("--no-compose", action="store_true", help="only the image itself")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with docker_engine(REPO / "build" / "dockerd.log"):
        base = base_image()
        result = build(base) | check_container()
        if not args.no_compose:
            result |= check_compose(base)
    result["check_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"image check passed in {result['check_s']:.0f} s: {result['image_bytes'] / 1e6:.0f} MB "
          f"(artifacts {result['artifacts_bytes'] / 1e6:.0f} MB), ready {result['ready_s']} s after start; "
          f"{args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
