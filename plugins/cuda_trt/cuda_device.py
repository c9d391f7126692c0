"""Selecting the CUDA device a measurement runs on, with one-line errors where CUDA is missing."""

from __future__ import annotations

from typing import Any

from accelnas.core.provenance import package_version
from accelnas.plugins.cuda_trt.errors import GpuUnavailableError


def require_cuda(device: int) -> Any:
    """Make CUDA device ``device`` current and return its ``torch.device``; explain why not otherwise."""
    import torch

    if torch.version.cuda is None:
        version = package_version("torch") or torch.__version__
        raise GpuUnavailableError(f"CUDA is not usable: torch {version} is a CPU-only build")
    if not torch.cuda.is_available():
        raise GpuUnavailableError(f"CUDA is not usable: torch (CUDA {torch.version.cuda}) finds no CUDA device")
    count = torch.cuda.device_count()
    if device >= count:
        raise GpuUnavailableError(f"CUDA device {device} does not exist (this machine has {count})")
    torch.cuda.set_device(device)
    return torch.device("cuda", device)


def device_identity(device: int) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of ``device``."""
    import torch

    props = torch.cuda.get_device_properties(device)
    return props.name, f"{props.major}.{props.minor}"
