"""Hook specifications of accelnas device plugins.

A plugin is a module or object with functions marked ``@accelnas.hookimpl`` named like the specs
below. Built-in and third-party plugins are discovered alike through the ``accelnas`` entry-point
group. ``export_model``, ``compile``, ``measure_throughput`` and ``measure_latency`` are first-result
hooks: an implementation returns ``None`` for targets it does not serve, so several plugins (or a
``tryfirst`` one replacing a backend) coexist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
    from accelnas.core.space import Architecture

PROJECT = "accelnas"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_targets(register: Callable[[Target], None]) -> None:
    """Declare the targets (device + backend) this plugin can measure.

    Call ``register(Target(...))`` once per target. A target whose SDK or hardware is missing is
    still registered, with ``available=False`` and a ``reason``, so listings can show why.
    """


@hookspec(firstresult=True)
def export_model(
    target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
) -> ExportedModel | None:
    """Turn the network into what the backend consumes (an ONNX file, a TorchScript module, ...).

    ``model`` is the ``torch.nn.Module`` of ``architecture`` in eval mode with calibrated BatchNorm
    (``None`` for a target declared with ``needs_model=False``); files go under ``workdir``, which the
    core removes afterwards. Return ``None`` for other targets.
    """


@hookspec(firstresult=True)
def compile(target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path) -> CompiledModel | None:
    """Build the runnable form (an inference session, an engine, an xmodel) from ``exported``.

    Return ``None`` for targets this plugin does not serve.
    """


@hookspec(firstresult=True)
def measure_throughput(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    """Measure images per second at ``settings.batch_for(target)``.

    Follow the core timing protocol (:func:`accelnas.core.timing.measure`) or an equivalent one, and
    return a :class:`~accelnas.core.records.Measurement` with metric ``"throughput"`` and unit
    ``"images/s"``. Return ``None`` for targets this plugin does not serve.
    """


@hookspec(firstresult=True)
def measure_latency(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    """Measure milliseconds per inference at batch 1 (or the target's latency batch), with p50/p90/p99 in ``extra``.

    Return a :class:`~accelnas.core.records.Measurement` with metric ``"latency"`` and unit ``"ms"``,
    or ``None`` for targets this plugin does not serve.
    """
