"""Backend options of the GPU targets, read from ``MeasureSettings.options`` and validated.

==================  ==============  ===========================================================
option              targets         meaning
==================  ==============  ===========================================================
``precision``       both            ``"fp16"`` (default) or ``"fp32"``. TensorRT: an fp16 ONNX graph
                                    built as a strongly typed network; PyTorch: autocast (AMP).
``device``          both            CUDA device index (default 0).
``torch_compile``   ``gpu/torch``   ``False`` (default, eager), ``True`` or a ``torch.compile`` mode:
                                    ``default``, ``reduce-overhead``, ``max-autotune``,
                                    ``max-autotune-no-cudagraphs``.
``cuda_graphs``     ``gpu/tensorrt`` replay each inference as a captured CUDA graph (default False).
``workspace_mib``   ``gpu/tensorrt`` builder workspace pool limit in MiB (default: TensorRT's).
``opt_level``       ``gpu/tensorrt`` builder optimisation level 0-5 (default 3, TensorRT's own).
``check_fp16``      ``gpu/tensorrt`` compare the fp16 graph with fp32 on the CPU before building
                                    (default True).
==================  ==============  ===========================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from accelnas.core.records import MeasureSettings
from accelnas.plugins.cuda_trt.errors import GpuOptionError

TENSORRT = "tensorrt"
TORCH = "torch"
PRECISIONS = ("fp16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMMON_KEYS = ("precision", "device")
BACKEND_KEYS = {
    TENSORRT: (*COMMON_KEYS, "cuda_graphs", "workspace_mib", "opt_level", "check_fp16"),
    TORCH: (*COMMON_KEYS, "torch_compile"),
}


@dataclass(frozen=True)
class GpuOptions:
    """Validated options of one GPU backend (defaults filled in)."""

    backend: str
    precision: str = "fp16"
    device: int = 0
    torch_compile: str | None = None  # a torch.compile mode, None = eager
    cuda_graphs: bool = False
    workspace_mib: int | None = None
    opt_level: int = 3
    check_fp16: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def canonical(self) -> dict[str, Any]:
        """The options in one spelling, defaults and the backend left out: what results are keyed by."""
        defaults = GpuOptions(self.backend)
        return {k: v for k, v in asdict(self).items() if k != "backend" and v != getattr(defaults, k)}


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # --option cuda_graphs=1 reads as the number 1
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise GpuOptionError(f"option {key!r} must be true or false, got {value!r}")


def _int(key: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool):
        raise GpuOptionError(f"option {key!r} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise GpuOptionError(f"option {key!r} must be an integer, got {value!r}") from None
    if number != value and str(number) != str(value).strip():
        raise GpuOptionError(f"option {key!r} must be an integer, got {value!r}")
    if number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise GpuOptionError(f"option {key!r} must be {bound}, got {number}")
    return number


def _compile_mode(value: Any) -> str | None:
    if value is None or value is False or (isinstance(value, str) and value.lower() in ("false", "off", "no", "")):
        return None
    if value is True or (isinstance(value, str) and value.lower() in ("true", "on", "yes")):
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    modes = ", ".join(COMPILE_MODES)
    raise GpuOptionError(f"option 'torch_compile' must be true, false or one of {modes}; got {value!r}")


def canonical_options(backend: str, settings: MeasureSettings) -> dict[str, Any]:
    """Validate a campaign's options for ``backend`` and give them as results are keyed by
    (``Target.check_values``: ``precision=FP16`` and no ``precision`` key alike)."""
    return parse_options(backend, settings).canonical()


def parse_options(backend: str, options: dict[str, Any] | MeasureSettings) -> GpuOptions:
    """Validate ``options`` (a dict or a campaign's settings) for ``backend`` (``tensorrt`` or ``torch``)."""
    if backend not in BACKEND_KEYS:
        raise GpuOptionError(f"unknown GPU backend {backend!r} (known: {', '.join(BACKEND_KEYS)})")
    raw = dict(options.options) if isinstance(options, MeasureSettings) else dict(options)
    allowed = BACKEND_KEYS[backend]
    for key in raw:
        if key not in allowed:
            raise GpuOptionError(f"option {key!r} does not apply to gpu/{backend} (its options: {', '.join(allowed)})")
    values: dict[str, Any] = {"backend": backend}
    if "precision" in raw:
        precision = str(raw["precision"]).lower()
        if precision not in PRECISIONS:
            raise GpuOptionError(f"option 'precision' must be one of {', '.join(PRECISIONS)}, got {raw['precision']!r}")
        values["precision"] = precision
    if "device" in raw:
        values["device"] = _int("device", raw["device"], 0)
    if "torch_compile" in raw:
        values["torch_compile"] = _compile_mode(raw["torch_compile"])
    if "cuda_graphs" in raw:
        values["cuda_graphs"] = _bool("cuda_graphs", raw["cuda_graphs"])
    if "workspace_mib" in raw:
        values["workspace_mib"] = _int("workspace_mib", raw["workspace_mib"], 1)
    if "opt_level" in raw:
        values["opt_level"] = _int("opt_level", raw["opt_level"], 0, 5)
    if "check_fp16" in raw:
        values["check_fp16"] = _bool("check_fp16", raw["check_fp16"])
    return GpuOptions(**values)
