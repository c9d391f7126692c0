"""Whether this process can use an NVIDIA GPU through PyTorch CUDA and TensorRT, and why not.

The probe is cheap where there is no GPU: it asks NVML for devices first (no torch import), then
checks that torch is a CUDA build that sees a device (a device count, which creates no CUDA context;
it does initialise torch's CUDA runtime unless ``PYTORCH_NVML_BASED_CUDA_CHECK=1``, so an isolated
measurement runs in a new interpreter (``--isolate`` starts one), never a fork of this process), then
that TensorRT 10 or newer imports.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec

from accelnas.core.errors import describe
from accelnas.core.provenance import package_version

log = logging.getLogger(__name__)

MIN_TENSORRT_MAJOR = 10
TENSORRT_HINT = "pip install tensorrt (matching the CUDA version of the driver; see docs/devices.md)"


@dataclass(frozen=True)
class GpuProbe:
    """What the availability check found. ``cuda_reason``/``tensorrt_reason`` say why a part is missing."""

    cuda_ok: bool
    cuda_reason: str | None = None
    tensorrt_ok: bool = False
    tensorrt_reason: str | None = None
    tensorrt_version: str | None = None
    device_count: int = 0
    gpu_name: str | None = None

    @property
    def torch_available(self) -> bool:
        return self.cuda_ok

    @property
    def torch_reason(self) -> str | None:
        return None if self.cuda_ok else self.cuda_reason

    @property
    def tensorrt_available(self) -> bool:
        return self.cuda_ok and self.tensorrt_ok

    @property
    def tensorrt_unavailable_reason(self) -> str | None:
        if not self.cuda_ok:
            return self.cuda_reason
        return None if self.tensorrt_ok else self.tensorrt_reason


def nvml_devices() -> tuple[int | None, str | None, str | None]:
    """(number of NVIDIA devices, name of the first, None) from NVML, or (0 or None, None, why not).

    None as the count means NVML cannot tell (nvidia-ml-py missing), 0 that there is no usable GPU.
    """
    if find_spec("pynvml") is None:
        return None, None, "nvidia-ml-py is not installed"
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return 0, None, f"NVML could not initialise ({exc})"
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)) if count else None
        return count, name.decode() if isinstance(name, bytes) else name, None
    except pynvml.NVMLError as exc:  # pragma: no cover - needs a driver
        return 0, None, f"NVML could not list devices ({exc})"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _torch_cuda() -> tuple[bool, str | None, int]:
    """(usable, reason, device count) as torch sees it, without creating a CUDA context."""
    if find_spec("torch") is None:
        return False, "torch is not installed (pip install torch, a CUDA build)", 0
    import torch

    if torch.version.cuda is None:
        version = package_version("torch") or torch.__version__
        return False, f"torch {version} is a CPU-only build; install a CUDA build of PyTorch", 0
    if not torch.cuda.is_available():
        return False, f"torch (CUDA {torch.version.cuda}) finds no usable CUDA device", 0
    return True, None, torch.cuda.device_count()


def _tensorrt() -> tuple[bool, str | None, str | None]:
    if find_spec("tensorrt") is None:
        return False, f"TensorRT is not installed ({TENSORRT_HINT})", None
    try:
        import tensorrt as trt
    except Exception as exc:  # a broken wheel or missing CUDA libraries
        return False, f"TensorRT does not import ({describe(exc)})", None
    version = str(getattr(trt, "__version__", "0"))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT_MAJOR:
        return False, f"TensorRT {version} is too old; {MIN_TENSORRT_MAJOR} or newer is needed", version
    return True, None, version


def probe_gpu() -> GpuProbe:
    """Check NVML, torch CUDA and TensorRT, in that order, stopping at the first missing part."""
    count, name, nvml_reason = nvml_devices()
    if count == 0:
        reason = f"no NVIDIA GPU found: {nvml_reason}" if nvml_reason else "no NVIDIA GPU found (NVML lists none)"
        return GpuProbe(cuda_ok=False, cuda_reason=reason)
    ok, reason, devices = _torch_cuda()
    if not ok:
        return GpuProbe(cuda_ok=False, cuda_reason=reason)
    trt_ok, trt_reason, trt_version = _tensorrt()
    return GpuProbe(
        cuda_ok=True,
        tensorrt_ok=trt_ok,
        tensorrt_reason=trt_reason,
        tensorrt_version=trt_version,
        device_count=devices,
        gpu_name=name,
    )


@lru_cache(maxsize=1)
def cached_probe() -> GpuProbe:
    """:func:`probe_gpu`, once per process."""
    result = probe_gpu()
    log.debug("GPU probe: %s", result)
    return result
