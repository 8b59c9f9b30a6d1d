"""Host facts for ``system.json``: CPU, memory, accelerators and software versions.

Standard library only (no ray, no torch import), so ``raybench.results.system_info`` can call
it lazily and a Ray task can run it on a remote node. The field names follow MLPerf Inference's
system description JSON (``host_processor_model_name``, ``accelerators_per_node`` ...) so that a
submission's ``systems/<name>.json`` can be filled from it; values MLPerf wants as text carry
their unit (``"23.5 GB"``).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["SOFTWARE_PACKAGES", "cpu_facts", "describe_host", "gpu_facts", "memory_bytes", "software_versions"]

SOFTWARE_PACKAGES = (
    "raybench", "ray", "numpy", "pydantic", "torch", "torchvision", "vllm", "transformers", "diffusers",
    "accelerate", "ultralytics", "httpx", "aiohttp",
)
"""Distributions whose versions are recorded when installed (read from metadata, never imported)."""


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """Processor model, sockets and cores per socket from ``/proc/cpuinfo``.

    ``sockets`` = distinct ``physical id`` values (1 when the field is absent, as in many VMs);
    ``cores_per_socket`` = the ``cpu cores`` field (physical cores of one package), falling back
    to ``logical CPUs / sockets``.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model = ""
    sockets: set[str] = set()
    cores = 0
    logical = 0
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "processor":
            logical += 1
        elif key == "model name" and not model:
            model = val
        elif key == "physical id":
            sockets.add(val)
        elif key == "cpu cores" and not cores:
            cores = int(val) if val.isdigit() else 0
    logical = logical or (os.cpu_count() or 0)
    n_sockets = max(1, len(sockets))
    return {
        "model": model or platform.processor() or platform.machine(),
        "sockets": n_sockets,
        "cores_per_socket": cores or max(1, logical // n_sockets),
        "logical_cpus": logical,
    }


def memory_bytes() -> int:
    """Physical memory in bytes (0 if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def gpu_facts(timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """One entry per NVIDIA GPU from ``nvidia-smi`` (empty without it or when it fails).

    Each entry: ``name``, ``memory_mib`` (int), ``driver``.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout_s, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0]:
            mem = int(float(parts[1])) if parts[1].replace(".", "", 1).isdigit() else 0
            gpus.append({"name": parts[0], "memory_mib": mem, "driver": parts[2]})
    return gpus


def software_versions(names: tuple[str, ...] = SOFTWARE_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` from package metadata (absent packages are left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _os_name() -> str:
    try:
        rel = platform.freedesktop_os_release()
        pretty = rel.get("PRETTY_NAME") or rel.get("NAME", "")
    except OSError:
        pretty = ""
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty} ({kernel})" if pretty else kernel


def describe_host() -> dict[str, Any]:
    """The MLPerf-style facts of this host (one node).

    Returns:
        ``hostname``, ``host_processor_model_name``, ``host_processors_per_node``,
        ``host_processor_core_count`` (physical cores per processor), ``host_processor_vcpu_count``,
        ``host_memory_capacity`` (text, GB = 2**30 bytes), ``accelerators_per_node``,
        ``accelerator_model_name``, ``accelerator_memory_capacity``, ``operating_system``, ``gpus``.
    """
    cpu = cpu_facts()
    gpus = gpu_facts()
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "host_processor_model_name": cpu["model"],
        "host_processors_per_node": cpu["sockets"],
        "host_processor_core_count": cpu["cores_per_socket"],
        "host_processor_vcpu_count": cpu["logical_cpus"],
        "host_memory_capacity": f"{memory_bytes() / 2**30:.1f} GB",
        "accelerators_per_node": len(gpus),
        "accelerator_model_name": gpus[0]["name"] if gpus else "N/A",
        "accelerator_memory_capacity": f"{gpus[0]['memory_mib'] / 1024:.0f} GB" if gpus else "N/A",
        "operating_system": _os_name(),
        "gpus": gpus,
    }
    return info
