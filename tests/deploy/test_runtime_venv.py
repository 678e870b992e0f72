"""The Dockerfile's runtime stage, rebuilt as a fresh venv: the service starts and scores without torch.

No Docker engine runs here, so the test does what the runtime stage does with the same inputs: it reads the
stage's `COPY` sources and its `pip install ".[${RUNTIME}]"` target from the Dockerfile (so the two cannot
drift), copies those files into an empty folder, installs them into a new venv with ordinary dependency
resolution (pip's cache makes a repeat run take about half a minute), and serves the tiny test artifacts
from it over real HTTP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.backend import AnswerRow, Scored, score_now
from app.onnx_backend import OnnxBackend
from app.settings import Settings
from tests.conftest import REPO, Server

pytestmark = pytest.mark.slow
# Importable in the training venv, never in the serving one (torch alone is ~700 MB).
TRAINING_ONLY = ("torch", "transformers", "peft", "optimum", "onnx", "safetensors")


@dataclass(frozen=True)
class RuntimeStage:
    sources: list[str]  # repository paths the stage copies before installing
    extra: str  # the `RUNTIME` build argument's default: cpu or gpu


def runtime_stage() -> RuntimeStage:
    text = (REPO / "Dockerfile").read_text()
    stage = re.split(r"^FROM .* AS runtime\s*$", text, flags=re.MULTILINE)[1]
    default = re.search(r"^ARG RUNTIME=(\w+)\s*$", stage, flags=re.MULTILINE)
    assert default, "runtime stage has no `ARG RUNTIME=<default>`"
    # The install must be the project's own extras: that is what makes pyproject.toml the one list.
    assert 'pip install ".[${RUNTIME}]"' in stage, "runtime stage no longer installs the project's extra"
    sources: list[str] = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", stage, flags=re.MULTILINE):
        *paths, _destination = [part for part in line.split() if not part.startswith("--")]
        sources.extend(paths)
    assert "pyproject.toml" in sources and "app" in sources, sources
    return RuntimeStage(sources, default.group(1))


def make_runtime_venv(root: Path) -> Path:
    """What the runtime stage's `python3 -m venv /opt/venv` + `pip install ".[cpu]"` produce; returns python."""
    stage = runtime_stage()
    src = root / "src"
    src.mkdir()
    for source in stage.sources:
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, src / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / source)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{src}[{stage.extra}]"],
                             capture_output=True, text=True, timeout=600, check=False)
    assert install.returncode == 0, install.stdout + install.stderr[-4000:]
    return python


def isolated_env() -> dict[str, str]:
    # Nothing from the training venv or the repository may leak into the serving interpreter.
    return {"PYTHONPATH": "", "PYTHONNOUSERSITE": "1", "VIRTUAL_ENV": ""}


def test_runtime_dependency_set_serves_without_torch(tiny_artifacts: Path, tmp_path: Path) -> None:
    python = make_runtime_venv(tmp_path)
    env = {**os.environ, **isolated_env()}
    workdir = tmp_path / "srv"  # like the image's WORKDIR /srv: no source tree next to the process
    workdir.mkdir()

    probe = ("import importlib.util, json, app; print(json.dumps({'app': app.__file__, 'present': "
             f"[m for m in {TRAINING_ONLY!r} if importlib.util.find_spec(m)]}}))")
    found = json.loads(subprocess.run([str(python), "-c", probe], cwd=workdir, env=env, capture_output=True,
                                      text=True, timeout=60, check=True).stdout)
    assert found["present"] == [], f"training packages in the serving set: {found['present']}"
    assert Path(found["app"]).is_relative_to(tmp_path / "venv"), found["app"]
    imported = subprocess.run([str(python), "-c", "import torch"], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    assert imported.returncode != 0 and "No module named 'torch'" in imported.stderr

    server = Server({"SCORER_ARTIFACTS": str(tiny_artifacts), "SCORER_DEVICE": "cpu", **isolated_env()},
                    tmp_path / "server.log", python=python, cwd=workdir)
    try:
        server.wait_ready(timeout=60)
        response = httpx.post(f"{server.url}/score/item-a", json={"answer": "acid rain dissolves marble"},
                              timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["item_id"] == "item-a" and body["adapter_version"] == "v1"
        assert body["score"] in (0, 1, 2) and abs(sum(body["probabilities"]) - 1) < 1e-4
        # the same answer through the development venv's backend: same artifacts, same numbers
        reference = OnnxBackend(Settings(artifacts=tiny_artifacts, device="cpu"))
        expected = score_now(reference, [AnswerRow("item-a", "acid rain dissolves marble")])[0]
        assert isinstance(expected, Scored) and body["score"] == expected.score
        assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    finally:
        server.stop()
