"""Helpers of the deployment-file checks: the dev-extra tools and YAML loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
K8S = REPO / "k8s"
OVERLAYS = ("cpu", "gpu")


def run_tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """A dev-extra tool from the venv that runs the tests; fails (does not skip) when it is missing."""
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed in {BIN}: pip install -e '.[dev]'")
    result = subprocess.run([str(exe), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, f"{name} {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def assert_durable_job_store(args: list[str]) -> None:
    """Jobs are never evicted and every write reaches the append-only file before Redis answers."""
    options = dict(zip(args[args[0] == "redis-server"::2], args[1 + (args[0] == "redis-server")::2], strict=False))
    assert options["--maxmemory-policy"] == "noeviction"
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "always"
