"""What `make image-check` needs before it builds: a Docker engine, a base image and the local build inputs.

Works where no container registry is reachable: the engine comes from Debian's packages (installed when
missing, started here when no daemon answers, stopped again by its PID), the base image is the public
`python:3.11-slim` where it can be pulled and otherwise one made from Debian packages
(deploy/offline/make-base.sh, cached), and torch and the CA bundle come from the host (deploy/build-inputs/).
Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PUBLIC_BASE = "python:3.11-slim"
LOCAL_BASE = "lora-scorer-base:bookworm"
BUILD_INPUTS = REPO / "deploy" / "build-inputs"
ENGINE_PACKAGES = {"dockerd": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}


def run(*command: str, timeout: float = 600, check: bool = True, quiet: bool = False) -> str:
    """A command's standard output; its error output is shown when it fails."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    if not quiet and done.returncode != 0:
        print(done.stderr.strip()[-500:])
    return done.stdout


def install_engine() -> None:
    """Debian's docker.io, docker-compose (1.29) and debootstrap, where a command of theirs is missing."""
    missing = sorted({package for command, package in ENGINE_PACKAGES.items() if shutil.which(command) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"install {' '.join(missing)} (apt-get, as root) and run the check again")
    print(f"installing {' '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)  # stale lists
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        raise RuntimeError(f"apt-get could not install {' '.join(missing)}")


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode == 0


@contextmanager
def docker_engine(log: Path) -> Iterator[None]:
    """A running Docker engine for the block: the one already running, or dockerd started (and stopped) here."""
    install_engine()
    if _engine_answers():
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        daemon = subprocess.Popen(["dockerd"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _engine_answers():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start (exit {daemon.poll()}); see {log}")
            time.sleep(0.5)
        print(f"started dockerd (pid {daemon.pid}); log: {log}")
        yield
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        print(f"stopped dockerd (pid {daemon.pid})")


def image_present(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0


def base_image() -> str:
    """The public slim Python image where it is here or can be pulled, else the Debian-made local one."""
    if image_present(PUBLIC_BASE):
        return PUBLIC_BASE
    try:
        pulled = subprocess.run(["docker", "pull", PUBLIC_BASE], capture_output=True, timeout=120, check=False)
        if pulled.returncode == 0:
            return PUBLIC_BASE
    except subprocess.TimeoutExpired:
        pass
    print(f"{PUBLIC_BASE} cannot be pulled: using {LOCAL_BASE} made from Debian packages")
    started = time.perf_counter()
    subprocess.run([str(REPO / "deploy" / "offline" / "make-base.sh"), LOCAL_BASE], check=True)
    print(f"local base ready in {time.perf_counter() - started:.0f} s")
    return LOCAL_BASE


def _pip_setting(name: str) -> str:
    done = subprocess.run(["python3", "-m", "pip", "config", "get", f"global.{name}"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def fill_build_inputs() -> list[str]:
    """Copies the host's CPU torch wheel (from pip's find-links folders) and CA bundle (pip's cert) into
    deploy/build-inputs/ where they are not there yet; returns what the folder holds for the build."""
    BUILD_INPUTS.mkdir(parents=True, exist_ok=True)
    cert = os.environ.get("PIP_CERT") or _pip_setting("cert")
    if cert and Path(cert).is_file():
        target = BUILD_INPUTS / "ca-bundle.crt"
        if not target.is_file() or target.read_bytes() != Path(cert).read_bytes():
            shutil.copyfile(cert, target)
    links = (os.environ.get("PIP_FIND_LINKS") or _pip_setting("find-links")).split()
    if not list(BUILD_INPUTS.glob("torch-2.13.0*.whl")):
        for folder in (Path(link) for link in links if Path(link).is_dir()):
            wheels = sorted(folder.glob("torch-2.13.0+cpu-*.whl"))
            if wheels:
                try:  # a hard link where the folders share a file system: no 190 MB copy
                    os.link(wheels[0], BUILD_INPUTS / wheels[0].name)
                except OSError:
                    shutil.copyfile(wheels[0], BUILD_INPUTS / wheels[0].name)
                break
    return sorted(path.name for path in BUILD_INPUTS.iterdir() if path.name != "README.md")
