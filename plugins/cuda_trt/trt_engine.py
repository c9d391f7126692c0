"""TensorRT 10/11 engines: build from ONNX (strongly typed), load, and run with named tensors.

Build: a strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; weak typing is
deprecated since 10.12 and gone in 11, where strong typing is always on) parsed from ONNX, the workspace
set through ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, the builder optimisation
level, a timing cache loaded from and saved back to disk (shared by all architectures on one GPU
model and TensorRT version), and one exact-shape optimisation profile per batch size measured.

Run: one execution context per profile, its input shape set with ``set_input_shape``, every I/O
tensor bound with ``set_tensor_address`` to a torch CUDA tensor, ``execute_async_v3`` on a torch CUDA
stream; optionally the inference is captured once as a CUDA graph (after a first
``execute_async_v3``, as TensorRT documents) and replayed. torch provides device memory, streams and
events, so no pycuda or cuda-python is needed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelnas.plugins.cuda_trt.engine_cache import EngineCache, EngineKey
from accelnas.plugins.cuda_trt.errors import EngineBuildError, GpuOutOfMemoryError
from accelnas.plugins.cuda_trt.probe import TENSORRT_HINT

log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`EngineBuildError` saying how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineBuildError(f"TensorRT is not importable ({exc}); {TENSORRT_HINT}") from exc
    return tensorrt


_LOGGER: Any = None


def _logger(trt: Any) -> Any:
    """The process-wide TensorRT logger, its collected errors cleared.

    TensorRT keeps the first logger it is given as its global logger, so one instance lives for the
    whole process instead of one per builder or runtime.
    """
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _new_logger(trt)
    _LOGGER.errors.clear()
    return _LOGGER


def _new_logger(trt: Any) -> Any:
    class CollectingLogger(trt.ILogger):
        """Forwards TensorRT messages to ``logging`` and keeps errors and warnings for error reports."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.debug("TensorRT error: %s", msg)
            elif level <= int(trt.ILogger.Severity.WARNING):
                log.debug("TensorRT warning: %s", msg)

    return CollectingLogger()


def _first_error(errors: list[str], fallback: str) -> str:
    """The first error TensorRT logged (the cause; later ones follow from it), and the last when they differ."""
    lines = [e.strip().splitlines()[0] for e in errors if e.strip()]
    if not lines:
        return fallback
    return lines[0] if lines[0] == lines[-1] else f"{lines[0]} (last: {lines[-1]})"


def _ended_out_of_memory(errors: list[str]) -> bool:
    """True when the build's last error is about memory: TensorRT also logs allocation failures of
    single tactics, which it skips and goes on, so an earlier one does not make the build's cause."""
    return bool(errors) and "memory" in errors[-1].lower()


def _set_profile(context: Any, index: int, batch: int, stream: Any) -> None:
    """Select optimisation profile ``index``; TensorRT 10's binding raises RuntimeError where it refuses."""
    try:
        accepted = context.set_optimization_profile_async(index, stream.cuda_stream)
    except RuntimeError as exc:
        raise EngineBuildError(f"TensorRT refused optimization profile {index} (batch {batch}): {exc}") from exc
    if not accepted:
        raise EngineBuildError(f"TensorRT refused optimization profile {index} (batch {batch})")


def _timing_cache(config: Any, blob: bytes, cache: EngineCache, key: EngineKey) -> tuple[Any, bool]:
    """Attach a timing cache made from ``blob``; a stale or corrupt one is dropped for an empty one."""
    if blob:
        try:
            timing = config.create_timing_cache(blob)
            if timing is not None and config.set_timing_cache(timing, False):
                return timing, True
        except Exception as exc:  # a corrupt cache file
            log.warning("timing cache %s unusable (%s); starting an empty one", key.timing_cache_name, exc)
        cache.drop_timing_cache(key)
    timing = config.create_timing_cache(b"")
    config.set_timing_cache(timing, False)
    return timing, False


def build_engine(onnx_path: Path, key: EngineKey, cache: EngineCache) -> tuple[bytes, dict[str, Any]]:
    """Serialized engine for ``onnx_path`` with one profile per batch of ``key``; updates the timing cache."""
    trt = import_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(strongly_typed) if strongly_typed is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT could not parse {onnx_path.name}: {_first_error(errors, 'unknown error')}")
    config = builder.create_builder_config()
    if key.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, key.workspace_mib << 20)
    config.builder_optimization_level = key.opt_level
    timing, reused = _timing_cache(config, cache.load_timing_cache(key), cache, key)
    name = network.get_input(0).name
    size = key.input_size
    for batch in key.batch_profile:
        profile = builder.create_optimization_profile()
        shape = (batch, 3, size, size)
        profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        message = _first_error(logger.errors, "build_serialized_network returned nothing")
        if _ended_out_of_memory(logger.errors):
            raise GpuOutOfMemoryError(f"TensorRT ran out of GPU memory building {key.arch_id}: {message}")
        raise EngineBuildError(f"TensorRT could not build an engine for {key.arch_id}: {message}")
    cache.store_timing_cache(key, bytes(memoryview(timing.serialize())))
    info = {"build_seconds": round(seconds, 2), "timing_cache_reused": reused, "network_layers": network.num_layers}
    tf32 = getattr(trt.BuilderFlag, "TF32", None)  # on by default: fp32 convolutions may round inputs to TF32
    if tf32 is not None:
        info["tf32_allowed"] = bool(config.get_flag(tf32))
    return bytes(memoryview(serialized)), info


def _torch_dtype(trt: Any, dtype: Any) -> Any:
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int8: torch.int8,
        trt.bool: torch.bool,
    }
    for name, torch_dtype in (("bfloat16", torch.bfloat16), ("int64", torch.int64), ("uint8", torch.uint8)):
        if hasattr(trt, name):
            table[getattr(trt, name)] = torch_dtype
    if dtype not in table:
        raise EngineBuildError(f"engine tensor type {dtype} has no torch equivalent")
    return table[dtype]


@dataclass
class BoundContext:
    """An execution context set to one profile and batch, with its tensors bound."""

    batch: int
    context: Any
    tensors: dict[str, Any]
    graph: Any = None


@dataclass
class TrtRunner:
    """A deserialized engine with one bound context per batch size, on a dedicated CUDA stream."""

    engine: Any
    stream: Any
    device: int
    contexts: dict[int, BoundContext]
    cuda_graphs: bool
    notes: dict[str, Any] = field(default_factory=dict)
    keep: tuple[Any, ...] = ()  # runtime and logger outlive the engine

    @classmethod
    def load(cls, data: bytes, batches: tuple[int, ...], input_size: int, device: int, cuda_graphs: bool) -> TrtRunner:
        """Deserialize ``data`` (raises :class:`EngineBuildError` if it is not a loadable engine)."""
        import torch

        trt = import_tensorrt()
        logger = _logger(trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineBuildError(f"TensorRT could not load the engine: {_first_error(logger.errors, 'invalid data')}")
        if engine.num_optimization_profiles != len(batches):
            raise EngineBuildError(f"engine has {engine.num_optimization_profiles} profiles, expected {len(batches)}")
        stream = torch.cuda.Stream(device=device)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise EngineBuildError(f"engine has {len(inputs)} inputs, expected one image input")
        generator = torch.Generator(device=f"cuda:{device}").manual_seed(0)
        contexts: dict[int, BoundContext] = {}
        # each context takes the scratch memory of its own profile when the profile is set (the default,
        # STATIC, reserves the largest profile's for every context: batch 1 would hold batch 256's)
        strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "ON_PROFILE_CHANGE", None)
        for index, batch in enumerate(batches):
            if strategy is not None:
                context = engine.create_execution_context(strategy=strategy)
            else:  # a TensorRT without the enum: its default
                context = engine.create_execution_context()
            if context is None:
                raise GpuOutOfMemoryError(f"TensorRT could not create an execution context for batch {batch}")
            _set_profile(context, index, batch, stream)
            shape = (batch, 3, input_size, input_size)
            if not context.set_input_shape(inputs[0], shape):
                raise EngineBuildError(f"TensorRT refused input shape {shape} for profile {index}")
            tensors = {}
            for name in names:
                shape = tuple(context.get_tensor_shape(name))
                dtype = _torch_dtype(trt, engine.get_tensor_dtype(name))
                if name in inputs:
                    tensor = torch.randn(shape, generator=generator, device=f"cuda:{device}").to(dtype)
                else:
                    tensor = torch.empty(shape, dtype=dtype, device=f"cuda:{device}")
                if not context.set_tensor_address(name, tensor.data_ptr()):
                    raise EngineBuildError(f"TensorRT refused the address of tensor {name!r} (shape {shape})")
                tensors[name] = tensor
            contexts[batch] = BoundContext(batch, context, tensors)
        torch.cuda.synchronize(device)
        return cls(engine, stream, device, contexts, cuda_graphs, keep=(runtime, logger))

    def release(self) -> None:
        """Free graphs, contexts and buffers before the engine, and the engine before its runtime."""
        if self.contexts and self.stream is not None:
            with contextlib.suppress(Exception):  # nothing may still run on buffers about to be freed
                self.stream.synchronize()
        for bound in self.contexts.values():
            bound.graph = None
            bound.context = None
            bound.tensors.clear()
        self.contexts.clear()
        self.engine = None
        self.keep = ()

    def __del__(self) -> None:
        self.release()

    def _execute(self, bound: BoundContext) -> None:
        if not bound.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineBuildError(f"execute_async_v3 failed at batch {bound.batch}")

    def _capture(self, bound: BoundContext) -> Any:
        """A CUDA graph of one inference, or None (with the reason in ``notes``) where capture fails."""
        import torch

        self._execute(bound)  # flush deferred updates before capture; failing here is not a capture failure
        self.stream.synchronize()
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self._execute(bound)
            self.stream.synchronize()
            return graph
        except (RuntimeError, EngineBuildError) as exc:  # CUDA refused to capture, or TensorRT to enqueue
            log.warning("CUDA graph capture failed at batch %d (%s); running without", bound.batch, exc)
            self.notes[f"cuda_graph_batch_{bound.batch}"] = f"capture failed: {exc}"
            return None

    def enqueue(self, batch: int) -> Callable[[], None]:
        """A function that enqueues one inference at ``batch`` on :attr:`stream` (no synchronisation)."""
        bound = self.contexts[batch]
        if self.cuda_graphs and bound.graph is None:
            bound.graph = self._capture(bound)
        if bound.graph is not None:
            return bound.graph.replay
        return lambda: self._execute(bound)
