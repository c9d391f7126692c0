"""Hook implementations of the tpu_xla plugin: TPUs (or XLA's CPU platform) through three stacks.

* ``tpu/jax``: the PyTorch module through torchax, compiled with ``jax.jit`` (:mod:`.jax_backend`).
* ``tpu/tensorflow``: the same network as a Keras model, XLA-compiled, ``TPUStrategy`` on a TPU VM
  (:mod:`.tf_backend`, :mod:`.keras_net`).
* ``tpu/torch_xla``: legacy PyTorch/XLA where it imports (:mod:`.torch_xla_backend`).

Without a TPU the targets are unavailable unless ``ACCELNAS_TPU_ALLOW_CPU=1`` lets them run on
XLA's CPU platform; listings then say so, and every result records its platform (``xla_platform``,
``on_tpu``) and device kind in its provenance. Options (``dtype``, ``devices``) are described in
:mod:`.options`; timing follows :mod:`accelnas.core.timing` with the compile time reported apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelnas.core.hookspecs import hookimpl
from accelnas.core.provenance import package_version
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.plugins.tpu_xla import program as xla
from accelnas.plugins.tpu_xla.detect import ALLOW_CPU_ENV, CPU_BATCH, allow_cpu, no_tpu_reason, paper_batch, scan_pci
from accelnas.plugins.tpu_xla.options import OPTION_KEYS, canonical_options, parse_options

log = logging.getLogger(__name__)

DEVICE = "tpu"
JAX = "jax"
TENSORFLOW = "tensorflow"
TORCH_XLA = "torch_xla"
BACKENDS = (JAX, TENSORFLOW, TORCH_XLA)


def _serves(target: Target) -> bool:
    return target.device == DEVICE and target.backend in BACKENDS


def tensorflow_version() -> str | None:
    return package_version("tensorflow") or package_version("tensorflow-cpu") or package_version("tensorflow-tpu")


def _missing(backend: str) -> str | None:
    """Why the packages of ``backend`` are missing (None when installed)."""
    if backend == JAX:
        absent = [name for name in ("jax", "torchax") if package_version(name) is None]
        return f"{' and '.join(absent)} not installed (pip install 'accelnas[tpu]')" if absent else None
    if backend == TENSORFLOW:
        if tensorflow_version() is None:
            return "tensorflow is not installed (pip install 'accelnas[tpu-tf]'; on a TPU VM the TensorFlow TPU build)"
        from accelnas.plugins.tpu_xla.keras_net import backend_problem

        return backend_problem()  # KERAS_BACKEND=jax would fail every architecture at export
    from accelnas.plugins.tpu_xla.torch_xla_backend import import_problem

    return import_problem()


CPU_PROTOCOL = "XLA CPU platform"
DESCRIPTIONS = {
    JAX: "the PyTorch module through torchax, jax.jit (XLA)",
    TENSORFLOW: "an equal Keras model, tf.function + XLA (TPUStrategy on a TPU VM)",
    TORCH_XLA: "legacy PyTorch/XLA (lazy tensors; no recent release)",
}


@hookimpl
def register_targets(register: Callable[[Target], None]) -> None:
    host = scan_pci()
    protocol = None  # on a TPU (and on a driver without one): the keys TPU results have always had
    if host.present:
        where, batch, platform_reason = f"{host.chips} x {host.kind}", paper_batch(host.kind), None
    elif allow_cpu():
        where, batch, platform_reason = f"no TPU here: XLA's CPU platform ({ALLOW_CPU_ENV}=1)", CPU_BATCH, None
        protocol = CPU_PROTOCOL  # results on the CPU never share a settings key with a TPU's
    else:
        where, batch, platform_reason = "no TPU here", CPU_BATCH, no_tpu_reason()
    requires = {JAX: ("jax", "torchax"), TENSORFLOW: ("tensorflow",), TORCH_XLA: ("torch_xla",)}
    for backend in BACKENDS:
        reason = _missing(backend) or platform_reason
        register(
            Target(
                device=DEVICE,
                backend=backend,
                description=f"{DESCRIPTIONS[backend]}; {where}",
                kind="tpu",
                default_batch_size=batch,
                requires=requires[backend],
                options=OPTION_KEYS,
                check_values=canonical_options,
                available=reason is None,
                reason=reason,
                protocol=protocol,
            )
        )


@hookimpl
def export_model(
    target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
) -> ExportedModel | None:
    if not _serves(target):
        return None
    options = parse_options(settings)
    if target.backend == JAX:
        from accelnas.plugins.tpu_xla.jax_backend import export_torchax

        return export_torchax(model)
    if target.backend == TENSORFLOW:
        from accelnas.plugins.tpu_xla.tf_backend import export_keras

        return export_keras(architecture, model, settings.input_size, options)
    return ExportedModel(format="torch-module", obj=model)


def build_program(target: Target, exported: ExportedModel, settings: MeasureSettings) -> xla.XlaProgram:
    """The backend's :class:`~.program.XlaProgram` for ``exported`` (nothing compiled yet)."""
    options = parse_options(settings)
    if target.backend == JAX:
        from accelnas.plugins.tpu_xla.jax_backend import JaxProgram

        states, fn = exported.obj
        return JaxProgram(states, fn, settings.input_size, options)
    if target.backend == TENSORFLOW:
        from accelnas.plugins.tpu_xla.tf_backend import TfProgram

        return TfProgram(exported.obj, settings.input_size, options)
    from accelnas.plugins.tpu_xla.torch_xla_backend import TorchXlaProgram

    return TorchXlaProgram(exported.obj, settings.input_size, options)


@hookimpl
def compile(target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path) -> CompiledModel | None:
    if not _serves(target):
        return None
    program = build_program(target, exported, settings)
    batch = xla.batch_for(target, program, settings)
    program.runner(batch)  # the explicit compile step for the throughput batch
    compiled = {str(batch): round(program.compile_seconds[batch], 4)}
    info = program.facts() | {"export": dict(exported.info), "compile_seconds": compiled}
    return CompiledModel(handle=program, info=info)


@hookimpl
def measure_throughput(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    if not _serves(target):
        return None
    return xla.measure_throughput(target, compiled.handle, settings)


@hookimpl
def measure_latency(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    if not _serves(target):
        return None
    return xla.measure_latency(compiled.handle, settings)
