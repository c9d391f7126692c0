"""Facts about the GPU and its software stack for every measurement: NVML (nvidia-ml-py) plus torch/TensorRT.

NVML gives the driver, the CUDA version the driver supports, clocks (current, application and
maximum), power limit, temperature, performance state and persistence mode. Each field that NVML
cannot read on a device is left out rather than failing the measurement.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from accelnas.core.provenance import package_version

log = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_version(encoded: int) -> str:
    """NVML's CUDA driver version integer (12040) as text (12.4)."""
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _read(out: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    try:
        out[key] = fn()
    except Exception as exc:  # NVMLError_NotSupported, NoPermission, ...
        log.debug("NVML field %s not readable: %s", key, exc)


def _nvml_handle(pynvml: Any, device: int, uuid: str | None) -> Any:
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(device)


def nvml_facts(device: int = 0, uuid: str | None = None) -> dict[str, Any]:
    """NVML facts of ``device`` (matched by ``uuid`` when given, since CUDA and NVML may number differently).

    Returns ``{"nvml": "unavailable: ..."}`` when NVML cannot be used.
    """
    try:
        import pynvml
    except ImportError:
        return {"nvml": "unavailable: nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"nvml": f"unavailable: {exc}"}
    out: dict[str, Any] = {"nvml": package_version("nvidia-ml-py") or "present"}
    try:
        handle = _nvml_handle(pynvml, device, uuid)
        _read(out, "gpu_name", lambda: _text(pynvml.nvmlDeviceGetName(handle)))
        _read(out, "gpu_uuid", lambda: _text(pynvml.nvmlDeviceGetUUID(handle)))
        _read(out, "driver_version", lambda: _text(pynvml.nvmlSystemGetDriverVersion()))
        _read(out, "cuda_driver_version", lambda: _cuda_version(pynvml.nvmlSystemGetCudaDriverVersion_v2()))
        _read(out, "sm_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
        _read(out, "mem_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM))
        _read(out, "sm_clock_max_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM))
        _read(out, "mem_clock_max_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM))
        _read(out, "sm_app_clock_mhz", lambda: pynvml.nvmlDeviceGetApplicationsClock(handle, pynvml.NVML_CLOCK_SM))
        _read(out, "power_limit_w", lambda: pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000)
        _read(out, "temperature_c", lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        _read(out, "pstate", lambda: f"P{int(pynvml.nvmlDeviceGetPerformanceState(handle))}")
        _read(out, "persistence_mode", lambda: bool(pynvml.nvmlDeviceGetPersistenceMode(handle)))
        _read(out, "memory_total_mib", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20)
    except pynvml.NVMLError as exc:
        out["nvml"] = f"unavailable: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return out


def torch_cuda_facts(device: int = 0) -> dict[str, Any]:
    """torch's view of the device: name, compute capability, memory, CUDA/cuDNN versions."""
    import torch

    props = torch.cuda.get_device_properties(device)
    return {
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "gpu_name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "gpu_memory_mib": props.total_memory // 2**20,
        "cuda_device": device,
    }


def device_uuid(device: int = 0) -> str | None:
    """The CUDA device's UUID as torch reports it (None where this torch does not)."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return str(uuid) if uuid is not None else None


def tensorrt_version() -> str | None:
    """The TensorRT in use: the imported module's version, else an installed distribution's (NVIDIA ships
    ``tensorrt`` and per-CUDA ``tensorrt-cu12``/``-cu13`` wheels), else None."""
    module = sys.modules.get("tensorrt")
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"):
        if version := package_version(name):
            return version
    return None


def gpu_provenance(device: int = 0) -> dict[str, Any]:
    """torch and NVML facts of ``device`` plus TensorRT/PyTorch versions; NVML's name wins if both give one."""
    facts = torch_cuda_facts(device) | {"tensorrt": tensorrt_version()}
    return facts | nvml_facts(device, device_uuid(device))
