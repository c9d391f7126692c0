"""``gpu/tensorrt``: ONNX export, fp16 graph, cached engine, CUDA-event measurement."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings
from accelnas.core.space import Architecture
from accelnas.plugins.cuda_trt.cuda_device import device_identity, require_cuda
from accelnas.plugins.cuda_trt.engine_cache import EngineCache, EngineKey, batch_profile, onnx_graph_digest
from accelnas.plugins.cuda_trt.errors import EngineBuildError, Fp16ConversionError, is_out_of_memory, out_of_memory
from accelnas.plugins.cuda_trt.fp16_onnx import checked_fp16
from accelnas.plugins.cuda_trt.gpu_timing import CudaEventTimer, measure_gpu
from accelnas.plugins.cuda_trt.options import GpuOptions
from accelnas.plugins.cuda_trt.trt_engine import TrtRunner, build_engine, import_tensorrt

log = logging.getLogger(__name__)


def export(
    architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path, opts: GpuOptions
) -> ExportedModel:
    """fp32 ONNX (dynamic batch) and, for fp16, its checked fp16 version."""
    from accelnas.plugins.cpu_ort.plugin import OPSET, export_onnx

    fp32 = export_onnx(model, Path(workdir) / f"{architecture.id}.onnx", settings.input_size)
    info: dict[str, Any] = {"arch_id": architecture.id, "opset": OPSET, "precision": opts.precision}
    path = fp32
    if opts.precision == "fp16":
        try:
            import onnxconverter_common  # noqa: F401
        except ImportError as exc:
            raise Fp16ConversionError(
                "fp16 needs onnxconverter-common (pip install 'accelnas[cuda]'), or use precision=fp32"
            ) from exc
        path = Path(workdir) / f"{architecture.id}.fp16.onnx"
        info |= checked_fp16(fp32, path, settings.input_size, check=opts.check_fp16)
    info["onnx_bytes"] = path.stat().st_size
    info["graph_digest"] = onnx_graph_digest(path)
    return ExportedModel(format="onnx", path=path, info=info)


def engine_key(
    exported: ExportedModel, settings: MeasureSettings, opts: GpuOptions, batches: tuple[int, ...]
) -> EngineKey:
    trt = import_tensorrt()
    gpu_name, capability = device_identity(opts.device)
    return EngineKey(
        arch_id=str(exported.info["arch_id"]),
        precision=opts.precision,
        batch_profile=batches,
        input_size=settings.input_size,
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=capability,
        opt_level=opts.opt_level,
        workspace_mib=opts.workspace_mib,
        graph_digest=str(exported.info.get("graph_digest", "")),
    )


def compile_engine(
    exported: ExportedModel, settings: MeasureSettings, opts: GpuOptions, cache: EngineCache, throughput_batch: int
) -> CompiledModel:
    """Load the cached engine or build it; a cached engine that does not load is rebuilt."""
    import_tensorrt()
    require_cuda(opts.device)
    batches = batch_profile(throughput_batch)
    try:
        key = engine_key(exported, settings, opts, batches)
        data = cache.load(key)
        state = "disabled" if not cache.enabled else ("hit" if data is not None else "miss")
        build_info: dict[str, Any] = {}
        if data is None:
            data, build_info = build_engine(Path(exported.path), key, cache)
            state = _stored(cache, key, data, build_info, state)
        try:
            runner = TrtRunner.load(data, batches, settings.input_size, opts.device, opts.cuda_graphs)
        except EngineBuildError as exc:
            if state != "hit":
                raise
            log.warning("cached engine for %s does not load (%s); rebuilding", key.arch_id, exc)
            cache.invalidate(key)
            state = "rebuilt"
            data, build_info = build_engine(Path(exported.path), key, cache)
            state = _stored(cache, key, data, build_info, state)
            runner = TrtRunner.load(data, batches, settings.input_size, opts.device, opts.cuda_graphs)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, "building or loading the TensorRT engine", max(batches)) from exc
        raise
    info = {k: v for k, v in exported.info.items() if k != "arch_id"} | build_info
    info |= {
        "backend": "tensorrt",
        "engine_cache": state,
        "engine_key": key.digest,
        "engine_bytes": len(data),
        "batch_profile": list(batches),
        "cuda_graphs": opts.cuda_graphs,
        "opt_level": opts.opt_level,
        "workspace_mib": opts.workspace_mib,
        "strongly_typed": True,
    }
    return CompiledModel(handle=runner, info=info)


def _stored(cache: EngineCache, key: EngineKey, data: bytes, build_info: dict[str, Any], state: str) -> str:
    """Cache a freshly built engine; the cache state, with " (not stored)" when writing it failed."""
    if cache.store(key, data, build_info) is None and cache.enabled:
        return f"{state} (not stored)"
    return state


def measure(compiled: CompiledModel, settings: MeasureSettings, *, metric: str, batch: int) -> Measurement:
    """Time one inference per sample on the runner's stream (see :mod:`gpu_timing`)."""
    import torch

    runner: TrtRunner = compiled.handle
    torch.cuda.set_device(runner.device)
    try:
        with torch.cuda.stream(runner.stream):
            timer = CudaEventTimer(runner.enqueue(batch), runner.stream)
            m = measure_gpu(timer, settings, metric=metric, batch=batch, provenance={})
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, f"measuring {metric}", batch) from exc
        raise
    m.provenance |= dict(runner.notes)
    return m
