"""Example accelnas device plugin: ``cpu/torchscript``.

The network is traced with :func:`torch.jit.trace`, frozen with :func:`torch.jit.freeze` and
optimised with :func:`torch.jit.optimize_for_inference`, then timed with the core timing protocol.
Every hook returns ``None`` for targets other than ``cpu/torchscript``, so this plugin coexists with
the built-in ``cpu_ort`` plugin and any other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelnas import hookimpl
from accelnas.core.provenance import host_provenance, package_version, usable_cores
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.timing import TimingResult, latency_measurement, measure_for, throughput_measurement

DEVICE = "cpu"
BACKEND = "torchscript"
DEFAULT_BATCH = 16


def _serves(target: Target) -> bool:
    return target.device == DEVICE and target.backend == BACKEND


@hookimpl
def register_targets(register: Callable[[Target], None]) -> None:
    """Declare ``cpu/torchscript``; unavailable, with a reason, when torch is missing."""
    torch_version = package_version("torch")
    register(
        Target(
            device=DEVICE,
            backend=BACKEND,
            description="this machine's CPU through frozen, inference-optimised TorchScript",
            kind="cpu",
            default_batch_size=DEFAULT_BATCH,
            requires=("torch",),
            options=(),  # reads no --option keys, so any given is refused
            available=torch_version is not None,
            reason=None if torch_version else "torch is not installed (pip install torch)",
        )
    )


@hookimpl
def export_model(
    target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
) -> ExportedModel | None:
    """Trace the eval-mode ``model`` on one ``input_size`` x ``input_size`` image."""
    if not _serves(target):
        return None
    import torch

    example = torch.randn(1, 3, settings.input_size, settings.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch releases
        traced = torch.jit.trace(model.eval(), example)
    return ExportedModel(format="torchscript", obj=traced, info={"traced_shape": list(example.shape)})


@hookimpl
def compile(target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path) -> CompiledModel | None:
    """Freeze and optimise the traced module; set torch's intra-op threads."""
    if not _serves(target):
        return None
    import torch

    threads = settings.threads or usable_cores()
    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.optimize_for_inference(torch.jit.freeze(exported.obj))
    info = {"threads": threads, "optimizations": "freeze, optimize_for_inference"}
    return CompiledModel(handle=module, info=info)


def _time(compiled: CompiledModel, settings: MeasureSettings, batch: int) -> TimingResult:
    """Time one forward pass of ``batch`` random images per sample, as the settings ask."""
    import torch

    module = compiled.handle
    size = settings.input_size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def run() -> None:
        with torch.inference_mode():
            module(x)

    return measure_for(run, settings)


def _provenance(compiled: CompiledModel) -> dict[str, Any]:
    """Host facts plus this plugin's own."""
    own = {"backend": BACKEND, "plugin_version": package_version("accelnas-example-plugin")}
    return host_provenance() | own | compiled.info


@hookimpl
def measure_throughput(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    """Images per second at the target's (or the requested) batch size."""
    if not _serves(target):
        return None
    batch = settings.batch_for(target)
    return throughput_measurement(
        _time(compiled, settings, batch),
        batch_size=batch,
        input_size=settings.input_size,
        provenance=_provenance(compiled),
    )


@hookimpl
def measure_latency(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    """Milliseconds per image at batch 1, with p50/p90/p99 in ``extra``."""
    if not _serves(target):
        return None
    return latency_measurement(
        _time(compiled, settings, 1), input_size=settings.input_size, provenance=_provenance(compiled)
    )
