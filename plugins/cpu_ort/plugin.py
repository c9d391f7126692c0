"""Hook implementations of the CPU plugin.

``cpu/onnxruntime`` exports ONNX (dynamic batch axis), builds an ONNX Runtime session with explicit
thread settings and denormals flushed to zero (option ``graph_optimization``: ``all``, the default,
``extended``, ``basic`` or ``disabled``, ONNX Runtime's graph optimisation level); ``cpu/torch``
runs the eager PyTorch module in ``channels_last`` with ``torch.set_flush_denormal``. Both time with
:mod:`accelnas.core.timing`. BatchNorm statistics are calibrated by the core before export, so no path
sees denormal storms.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from accelnas.core.errors import AccelnasError
from accelnas.core.hookspecs import hookimpl
from accelnas.core.provenance import host_provenance, package_version, usable_cores
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.timing import latency_measurement, measure_for, throughput_measurement

log = logging.getLogger(__name__)

DEVICE = "cpu"
ORT = "onnxruntime"
TORCH = "torch"
DEFAULT_BATCH = 16
OPSET = 17
GRAPH_OPTIMIZATION = "graph_optimization"
GRAPH_LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disabled": "ORT_DISABLE_ALL",
}


def _serves(target: Target) -> bool:
    return target.device == DEVICE and target.backend in (ORT, TORCH)


@hookimpl
def register_targets(register) -> None:
    ort_version = package_version("onnxruntime")
    register(
        Target(
            device=DEVICE,
            backend=ORT,
            description="this machine's CPU through ONNX Runtime (CPUExecutionProvider)",
            kind="cpu",
            default_batch_size=DEFAULT_BATCH,
            requires=("onnxruntime", "onnx"),
            options=(GRAPH_OPTIMIZATION,),
            check_values=canonical_options,
            available=ort_version is not None,
            reason=None if ort_version else "onnxruntime is not installed (pip install onnxruntime)",
        )
    )
    register(
        Target(
            device=DEVICE,
            backend=TORCH,
            description="this machine's CPU through eager PyTorch, channels_last",
            kind="cpu",
            default_batch_size=DEFAULT_BATCH,
            requires=("torch",),
            options=(),
        )
    )


def _threads(settings: MeasureSettings) -> int:
    return settings.threads or usable_cores()


def _graph_option(settings: MeasureSettings) -> str:
    """The ``graph_optimization`` option's value, validated, in lower case."""
    value = str(settings.option(GRAPH_OPTIMIZATION, "all")).strip().lower()
    if value not in GRAPH_LEVELS:
        known = ", ".join(GRAPH_LEVELS)
        raise AccelnasError(f"option {GRAPH_OPTIMIZATION} must be one of {known}, got {value!r}")
    return value


def graph_level(settings: MeasureSettings) -> str:
    """ONNX Runtime's name of the graph optimisation level the ``graph_optimization`` option asks for."""
    return GRAPH_LEVELS[_graph_option(settings)]


def canonical_options(settings: MeasureSettings) -> dict[str, str]:
    """The options as results are keyed by: ``graph_optimization`` in lower case, left out at its
    default (``ALL``, ``all`` and no option key alike)."""
    value = _graph_option(settings)
    return {} if value == "all" else {GRAPH_OPTIMIZATION: value}


def export_onnx(model: Any, path: Path, input_size: int) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis (TorchScript exporter; dynamo as fallback)."""
    import torch

    example = (torch.randn(1, 3, input_size, input_size),)
    kwargs: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["logits"],
        "opset_version": OPSET,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                example,
                str(path),
                dynamo=False,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                **kwargs,
            )
        except (TypeError, RuntimeError, NotImplementedError) as exc:  # exporter without TorchScript path
            log.debug("TorchScript ONNX export unavailable (%s); using the dynamo exporter", exc)
            batch = torch.export.Dim("batch", min=1, max=4096)
            example = (torch.randn(2, 3, input_size, input_size),)  # a batch of 1 could be specialised to 1
            torch.onnx.export(
                model, example, str(path), dynamo=True, dynamic_shapes=({0: batch},), verbose=False, **kwargs
            )
    return path


@hookimpl
def export_model(
    target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
) -> ExportedModel | None:
    if not _serves(target):
        return None
    if target.backend == TORCH:
        import torch

        return ExportedModel(format="torch-module", obj=model.to(memory_format=torch.channels_last))
    path = export_onnx(model, Path(workdir) / f"{architecture.id}.onnx", settings.input_size)
    return ExportedModel(format="onnx", path=path, info={"opset": OPSET, "bytes": path.stat().st_size})


@hookimpl
def compile(target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path) -> CompiledModel | None:
    if not _serves(target):
        return None
    threads = _threads(settings)
    if target.backend == TORCH:
        import torch

        torch.set_num_threads(threads)
        flushed = torch.set_flush_denormal(True)
        info = {
            "threads": threads,
            "memory_format": "channels_last",
            "denormals": "batchnorm-calibrated" + (", flush-to-zero" if flushed else ""),
        }
        return CompiledModel(handle=exported.obj, info=info)
    import onnxruntime as ort

    level = graph_level(settings)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(exported.path), options, providers=["CPUExecutionProvider"])
    info = {
        "threads": threads,
        "providers": session.get_providers(),
        "graph_optimization": level,
        "denormals": "batchnorm-calibrated, flush-to-zero",
    }
    return CompiledModel(handle=session, info=info)


def _runner(target: Target, compiled: CompiledModel, batch: int, input_size: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)
    if target.backend == TORCH:
        import torch

        module = compiled.handle
        tensor = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)

        def run() -> None:
            with torch.inference_mode():
                module(tensor)

        return run
    session = compiled.handle
    name = session.get_inputs()[0].name
    feed = {name: x}
    return lambda: session.run(None, feed)


def _provenance(target: Target, compiled: CompiledModel) -> dict[str, Any]:
    versions = {"onnxruntime": package_version("onnxruntime")} if target.backend == ORT else {}
    return host_provenance() | versions | {"backend": target.backend, **compiled.info}


def _time(target: Target, compiled: CompiledModel, settings: MeasureSettings, batch: int):
    return measure_for(_runner(target, compiled, batch, settings.input_size), settings)


@hookimpl
def measure_throughput(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    if not _serves(target):
        return None
    batch = settings.batch_for(target)
    result = _time(target, compiled, settings, batch)
    return throughput_measurement(
        result, batch_size=batch, input_size=settings.input_size, provenance=_provenance(target, compiled)
    )


@hookimpl
def measure_latency(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    if not _serves(target):
        return None
    result = _time(target, compiled, settings, 1)
    return latency_measurement(result, input_size=settings.input_size, provenance=_provenance(target, compiled))
