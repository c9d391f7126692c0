"""``gpu/torch``: eager PyTorch on CUDA in channels_last, fp16 through autocast (AMP), optional torch.compile."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings
from accelnas.core.space import Architecture
from accelnas.plugins.cuda_trt.cuda_device import require_cuda
from accelnas.plugins.cuda_trt.errors import is_out_of_memory, out_of_memory
from accelnas.plugins.cuda_trt.gpu_timing import CudaEventTimer, measure_gpu
from accelnas.plugins.cuda_trt.options import GpuOptions


@dataclass
class TorchRunner:
    """A module on one CUDA device with its stream, precision and per-batch inputs."""

    module: Any
    device: Any
    stream: Any
    fp16: bool
    input_size: int
    inputs: dict[int, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Inference mode, autocast (fp16) and the runner's stream, entered once around many calls."""
        import torch

        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16),
            torch.cuda.stream(self.stream),
        ):
            yield

    def input(self, batch: int) -> Any:
        import torch

        if batch not in self.inputs:
            generator = torch.Generator(device=self.device).manual_seed(0)
            size = self.input_size
            x = torch.randn(batch, 3, size, size, generator=generator, device=self.device)
            self.inputs[batch] = x.contiguous(memory_format=torch.channels_last)
        return self.inputs[batch]

    def enqueue(self, batch: int) -> Callable[[], Any]:
        """One forward pass at ``batch`` (call inside :meth:`running`)."""
        module, x = self.module, self.input(batch)
        return lambda: module(x)


def export(architecture: Architecture, model: Any) -> ExportedModel:
    return ExportedModel(format="torch-module", obj=model, info={"arch_id": architecture.id})


def compile_module(
    exported: ExportedModel, settings: MeasureSettings, opts: GpuOptions, batches: tuple[int, ...]
) -> CompiledModel:
    """Move the module to the GPU in channels_last, optionally ``torch.compile`` it, run each batch once."""
    import torch

    device = require_cuda(opts.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    try:
        module = exported.obj.to(device=device, memory_format=torch.channels_last).eval()
        if opts.torch_compile:
            module = torch.compile(module, mode=opts.torch_compile, dynamic=False)  # one graph per batch size
        stream = torch.cuda.Stream(device=device)
        runner = TorchRunner(module, device, stream, opts.precision == "fp16", settings.input_size)
        start = time.perf_counter()
        with runner.running():
            for batch in batches:  # first calls: cuDNN autotuning, lazy init, torch.compile
                runner.enqueue(batch)()
        runner.stream.synchronize()
        first_seconds = time.perf_counter() - start
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, "preparing the module", max(batches)) from exc
        raise
    info = {
        "backend": "torch",
        "precision": opts.precision,
        "amp": "autocast fp16" if opts.precision == "fp16" else "off",
        "memory_format": "channels_last",
        "torch_compile": opts.torch_compile or "off",
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "first_call_seconds": round(first_seconds, 2),
    }
    return CompiledModel(handle=runner, info=info)


def measure(compiled: CompiledModel, settings: MeasureSettings, *, metric: str, batch: int) -> Measurement:
    import torch

    runner: TorchRunner = compiled.handle
    torch.cuda.set_device(runner.device)
    try:
        with runner.running():
            timer = CudaEventTimer(runner.enqueue(batch), runner.stream)
            return measure_gpu(timer, settings, metric=metric, batch=batch, provenance={})
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(exc, f"measuring {metric}", batch) from exc
        raise
