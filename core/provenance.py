"""Facts about the machine and software a measurement ran on."""

from __future__ import annotations

import math
import os
import platform
import socket
from functools import lru_cache
from importlib import metadata
from typing import Any


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil is a dependency
        return os.cpu_count() or 1


def usable_cores() -> int:
    """Physical cores this process may run on: the host's, capped by its CPU affinity (taskset,
    cpusets) and a cgroup v2 CPU quota (containers, Slurm); the default thread count of CPU targets."""
    cores = physical_cores()
    if hasattr(os, "sched_getaffinity"):
        cpus = os.sched_getaffinity(0)
        cores = min(cores, cores_of(cpus) or len(cpus))
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cores_of(cpus: set[int], root: str = "/sys/devices/system/cpu") -> int | None:
    """Physical cores the logical ``cpus`` belong to (two SMT siblings count once), from the kernel's
    topology files; None where they cannot be read."""
    cores = set()
    try:
        for cpu in cpus:
            topology = f"{root}/cpu{cpu}/topology"
            with open(f"{topology}/physical_package_id", encoding="utf-8") as fh:
                package = fh.read().strip()
            with open(f"{topology}/core_id", encoding="utf-8") as fh:
                cores.add((package, fh.read().strip()))
    except OSError:
        return None
    return len(cores) or None


def cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs a cgroup v2 quota allows (``quota / period`` of ``cpu.max``), None where unlimited or unknown."""
    try:
        with open(path, encoding="utf-8") as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def host_provenance() -> dict[str, Any]:
    """CPU model, core counts, OS, Python and core library versions (a fresh copy each call)."""
    return dict(_host_provenance())


@lru_cache(maxsize=1)
def _host_provenance() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cgroup_cpu_quota": cgroup_cpu_quota(),
        "usable_cores": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "accelnas": package_version("accelnas"),
        "torch": package_version("torch"),
        "numpy": package_version("numpy"),
    }
