"""What `python -m bench.gpu` records about the machine: the device's name, GPU and host memory, the ONNX
Runtime build. Reads only; nvidia-smi is asked where it exists (it ignores CUDA_VISIBLE_DEVICES, so the
visible GPU's index or UUID is passed to it)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

import onnxruntime as ort

MB = 1024 * 1024


def visible_gpu() -> str:
    """The GPU that ONNX Runtime's device 0 is: the first of CUDA_VISIBLE_DEVICES (index or UUID), else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return visible or "0"


def nvidia_smi(fields: str, what: str = "gpu") -> list[list[str]]:
    """Rows of `nvidia-smi --query-<what>=<fields>` for the visible GPU; [] where nvidia-smi is missing."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    command = [binary, f"--query-{what}={fields}", "--format=csv,noheader,nounits", "-i", visible_gpu()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return []
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_facts(device: str) -> dict[str, Any]:
    """`name`: the GPU as its driver reports it (cuda) or the CPU model (cpu); plus what explains a figure."""
    facts: dict[str, Any] = {"cpu": cpu_name(), "cpu_count": os.cpu_count()}
    if device != "cuda":
        return {"name": facts["cpu"], **facts}
    rows = nvidia_smi("name,driver_version,memory.total,compute_cap")
    if not rows:
        return {"name": "unknown GPU (nvidia-smi missing or failed)", **facts}
    name, driver, total, capability = (rows[0] + ["", "", "", ""])[:4]
    return {"name": name, "driver": driver, "memory_total_mb": _number(total), "compute_capability": capability,
            **facts}


def gpu_used_mb() -> float | None:
    """Memory in use on the whole visible GPU (every process)."""
    rows = nvidia_smi("memory.used")
    return _number(rows[0][0]) if rows else None


def process_gpu_mb(pid: int) -> float | None:
    """This process's GPU memory as the driver accounts it; None where the driver does not list it (a PID
    namespace in a container hides it: callers then take the change of `gpu_used_mb`)."""
    for row in nvidia_smi("pid,used_memory", what="compute-apps"):
        if len(row) >= 2 and row[0] == str(pid):
            return _number(row[1])
    return None


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def ort_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    try:
        from onnxruntime.capi import build_and_package_info as build

        facts["package"] = getattr(build, "package_name", None)
        facts["cuda_version"] = getattr(build, "cuda_version", None)
    except ImportError:
        pass
    return facts


def preload_cuda_libraries() -> str:
    """onnxruntime-gpu installed with the `cuda,cudnn` extras finds CUDA and cuDNN in the nvidia-* wheels only
    after `onnxruntime.preload_dlls()`; system libraries (a CUDA base image) need no preload. Before the first
    CUDA session, and harmless either way."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return "onnxruntime has no preload_dlls"
    try:
        preload()
    except Exception as exc:  # a missing library shows up again, clearly, when the CUDA session is made
        return f"preload_dlls failed: {type(exc).__name__}: {exc}"
    return "preload_dlls called"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
