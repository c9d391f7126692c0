"""Errors of the NVIDIA GPU plugin: one line each, raised as :class:`~accelnas.core.errors.AccelnasError`."""

from __future__ import annotations

from accelnas.core.errors import AccelnasError, TargetUnavailableError, first_line


class GpuOptionError(AccelnasError, ValueError):
    """A backend option of ``gpu/tensorrt`` or ``gpu/torch`` is unknown or has a bad value."""


class GpuUnavailableError(TargetUnavailableError):
    """CUDA (or TensorRT) cannot be used in this process, or the CUDA device asked for does not exist: the
    campaign stops with nothing stored, as every architecture would fail alike."""


class EngineBuildError(AccelnasError):
    """TensorRT could not parse the ONNX graph, build or load an engine."""


class GpuOutOfMemoryError(AccelnasError):
    """The GPU ran out of memory for one architecture; the next one starts from released memory."""


class Fp16ConversionError(AccelnasError):
    """The fp16 ONNX graph is invalid or disagrees with the fp32 graph beyond the tolerance."""


def out_of_memory(exc: BaseException, what: str, batch: int | None = None) -> GpuOutOfMemoryError:
    """A :class:`GpuOutOfMemoryError` for ``exc`` with advice; releases cached CUDA memory first."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - releasing memory is best effort
        pass
    first = first_line(exc)
    advice = f" at batch {batch}; try a smaller --batch-size" if batch else ""
    return GpuOutOfMemoryError(f"GPU out of memory while {what}{advice} ({first})")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's CUDA OOM error and for CUDA/TensorRT errors that report an allocation failure.

    Errors of this plugin (already explained, :class:`GpuOutOfMemoryError` included) are not re-wrapped.
    """
    if isinstance(exc, AccelnasError):
        return False
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover - torch is a dependency
        pass
    text = str(exc).lower()
    return "out of memory" in text or "cudaerrormemoryallocation" in text
