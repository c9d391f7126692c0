"""Hook implementations of the NVIDIA GPU plugin: ``gpu/tensorrt`` and ``gpu/torch``.

``gpu/tensorrt`` exports ONNX, converts it to fp16 (checked against fp32 on the CPU), builds a
strongly typed TensorRT engine with one profile per measured batch size (cached on disk, see
:mod:`.engine_cache`), and times ``execute_async_v3`` with CUDA events. ``gpu/torch`` runs the eager
module on CUDA in channels_last with fp16 autocast, optionally ``torch.compile``-d. Both report GPU
compute time through the core timing protocol (:mod:`.gpu_timing`) with NVML provenance.

Where there is no GPU, no CUDA build of torch or no TensorRT, the targets are registered as
unavailable with the reason. :class:`CudaTrtPlugin` takes the availability check and the engine cache
directory as arguments; the module-level hooks use the real check and the default cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from accelnas.core.hookspecs import hookimpl
from accelnas.core.provenance import host_provenance
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.plugins.cuda_trt import tensorrt_backend, torch_backend
from accelnas.plugins.cuda_trt.engine_cache import EngineCache, batch_profile, default_cache_dir
from accelnas.plugins.cuda_trt.gpu_provenance import gpu_provenance
from accelnas.plugins.cuda_trt.options import BACKEND_KEYS, TENSORRT, TORCH, canonical_options, parse_options
from accelnas.plugins.cuda_trt.probe import GpuProbe, cached_probe

log = logging.getLogger(__name__)

DEVICE = "gpu"
DEFAULT_BATCH = 256
_DEFAULT_DIR = object()


class CudaTrtPlugin:
    """The plugin as an object: ``probe`` decides availability, ``cache_dir`` holds engines (None: no cache)."""

    def __init__(
        self, probe: Callable[[], GpuProbe] = cached_probe, cache_dir: Path | str | object | None = _DEFAULT_DIR
    ) -> None:
        self.probe = probe
        self._cache_dir = cache_dir

    @property
    def cache(self) -> EngineCache:
        root = default_cache_dir() if self._cache_dir is _DEFAULT_DIR else self._cache_dir
        return EngineCache(root)  # type: ignore[arg-type]

    @staticmethod
    def serves(target: Target) -> bool:
        return target.device == DEVICE and target.backend in (TENSORRT, TORCH)

    @hookimpl
    def register_targets(self, register: Callable[[Target], None]) -> None:
        found = self.probe()
        on = f" ({found.gpu_name})" if found.gpu_name else ""
        if found.device_count > 1:  # the name is device 0's; --option device=N measures on another
            on = f" (device 0 of {found.device_count}{': ' + found.gpu_name if found.gpu_name else ''}; option device)"
        register(
            Target(
                device=DEVICE,
                backend=TENSORRT,
                description=f"NVIDIA GPU{on} through a strongly typed TensorRT engine (fp16 ONNX by default)",
                kind="gpu",
                default_batch_size=DEFAULT_BATCH,
                requires=("CUDA build of torch", "tensorrt>=10", "onnxconverter-common"),
                options=BACKEND_KEYS[TENSORRT],
                check_values=partial(canonical_options, TENSORRT),
                available=found.tensorrt_available,
                reason=found.tensorrt_unavailable_reason,
            )
        )
        register(
            Target(
                device=DEVICE,
                backend=TORCH,
                description=f"NVIDIA GPU{on} through eager PyTorch CUDA, channels_last, fp16 autocast",
                kind="gpu",
                default_batch_size=DEFAULT_BATCH,
                requires=("CUDA build of torch",),
                options=BACKEND_KEYS[TORCH],
                check_values=partial(canonical_options, TORCH),
                available=found.torch_available,
                reason=found.torch_reason,
            )
        )

    @hookimpl
    def export_model(
        self, target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
    ) -> ExportedModel | None:
        if not self.serves(target):
            return None
        opts = parse_options(target.backend, settings)
        if target.backend == TORCH:
            return torch_backend.export(architecture, model)
        return tensorrt_backend.export(architecture, model, settings, workdir, opts)

    @hookimpl
    def compile(
        self, target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path
    ) -> CompiledModel | None:
        if not self.serves(target):
            return None
        opts = parse_options(target.backend, settings)
        batch = settings.batch_for(target)
        if target.backend == TORCH:
            batches = batch_profile(batch)
            compiled = torch_backend.compile_module(exported, settings, opts, batches)
        else:
            compiled = tensorrt_backend.compile_engine(exported, settings, opts, self.cache, batch)
        compiled.info["cuda_device"] = opts.device
        return compiled

    def _measure(self, target: Target, compiled: CompiledModel, settings: MeasureSettings, metric: str) -> Measurement:
        batch = settings.batch_for(target) if metric == "throughput" else 1
        backend = torch_backend if target.backend == TORCH else tensorrt_backend
        m = backend.measure(compiled, settings, metric=metric, batch=batch)
        gpu = gpu_provenance(compiled.info.get("cuda_device", 0))
        m.provenance = host_provenance() | gpu | compiled.info | m.provenance
        return m.validate()

    @hookimpl
    def measure_throughput(
        self, target: Target, compiled: CompiledModel, settings: MeasureSettings
    ) -> Measurement | None:
        return self._measure(target, compiled, settings, "throughput") if self.serves(target) else None

    @hookimpl
    def measure_latency(self, target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
        return self._measure(target, compiled, settings, "latency") if self.serves(target) else None


_PLUGIN = CudaTrtPlugin()


@hookimpl
def register_targets(register: Callable[[Target], None]) -> None:
    _PLUGIN.register_targets(register)


@hookimpl
def export_model(
    target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
) -> ExportedModel | None:
    return _PLUGIN.export_model(target, architecture, model, settings, workdir)


@hookimpl
def compile(target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path) -> CompiledModel | None:
    return _PLUGIN.compile(target, exported, settings, workdir)


@hookimpl
def measure_throughput(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    return _PLUGIN.measure_throughput(target, compiled, settings)


@hookimpl
def measure_latency(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    return _PLUGIN.measure_latency(target, compiled, settings)
