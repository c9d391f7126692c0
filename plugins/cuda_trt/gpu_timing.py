"""CUDA-event timing on top of the core timing protocol, with trtexec-style figures.

:class:`CudaEventTimer` is the function :func:`accelnas.core.timing.measure` calls: each call records
a start event on the stream, enqueues one inference (timing the host's enqueue), records an end
event and waits for it. The core protocol warms up and decides when to stop; :func:`gpu_result` then
swaps the host wall-clock samples for the CUDA-event samples of the same calls (GPU compute time,
the time the GPU spent from the first to the last operation of the inference) and recomputes the
mean, confidence interval and precision flag with the core statistics, so the value a GPU target
reports is GPU compute time, as ``trtexec``'s "GPU Compute Time", and its statistics match every
other target's. One difference: the start event is recorded before the inference is enqueued (trtexec
enqueues one batch ahead), so where the host enqueues more slowly than the GPU computes, the figure
follows the enqueue time; that case carries the *enqueue-bound* warning below.

``extra`` also holds the host view: wall time per synchronous inference, enqueue time, their
difference, and two warnings in the spirit of ``trtexec``: *enqueue-bound* when the mean enqueue time
is at least ``ENQUEUE_BOUND_RATIO`` (80%) of the mean GPU compute time (the host cannot keep the GPU
busy; CUDA graphs or ``torch.compile`` may help), and *unstable* when the coefficient of variation
of the GPU compute time exceeds ``UNSTABLE_CV`` (1%; lock the clocks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from accelnas.core.records import Measurement, MeasureSettings
from accelnas.core.timing import (
    TimingResult,
    latency_measurement,
    mean_ci,
    measure_for,
    throughput_measurement,
)

ENQUEUE_BOUND_RATIO = 0.8
UNSTABLE_CV = 0.01


class CudaEventTimer:
    """One inference per call between two CUDA events on ``stream``, then a wait for the end event."""

    def __init__(self, enqueue: Callable[[], Any], stream: Any) -> None:
        import torch

        self.enqueue = enqueue
        self.stream = stream
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.gpu_s: list[float] = []
        self.enqueue_s: list[float] = []

    def __call__(self) -> None:
        self.start.record(self.stream)
        t0 = time.perf_counter()
        self.enqueue()
        t1 = time.perf_counter()
        self.end.record(self.stream)
        self.end.synchronize()
        self.enqueue_s.append(t1 - t0)
        self.gpu_s.append(self.start.elapsed_time(self.end) / 1e3)


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q * 100))


def gpu_result(host: TimingResult, gpu_s: list[float], enqueue_s: list[float], min_samples: int) -> TimingResult:
    """The timed phase of ``host`` with the CUDA-event times of the same calls as its samples."""
    n = len(host.samples)
    if len(gpu_s) < n or len(enqueue_s) < n:
        raise ValueError(f"{n} timed calls but only {len(gpu_s)} GPU and {len(enqueue_s)} enqueue times")
    gpu = list(gpu_s[-n:])
    if any(not (t > 0) for t in gpu):
        raise ValueError("CUDA events reported a non-positive GPU time")
    mean, std, low, high = mean_ci(gpu)
    reached = n >= min_samples and (high - low) / 2 <= host.precision * mean
    return TimingResult(
        samples=gpu,
        mean=mean,
        std=std,
        ci_low=low,
        ci_high=high,
        precision=host.precision,
        precision_reached=reached,
        warmup_calls=host.warmup_calls,
        warmup_seconds=host.warmup_seconds,
        steady=host.steady,
        timed_seconds=host.timed_seconds,
    )


def gpu_extra(host: TimingResult, gpu: TimingResult, enqueue_s: list[float], batch: int) -> dict[str, Any]:
    """trtexec-style figures: GPU compute vs host wall time, enqueue time, warnings."""
    n = len(host.samples)
    enqueue = list(enqueue_s[-n:])
    gpu_mean = gpu.mean
    enqueue_mean = float(np.mean(enqueue))
    cv = gpu.std / gpu_mean if gpu_mean > 0 else 0.0
    enqueue_bound = enqueue_mean >= ENQUEUE_BOUND_RATIO * gpu_mean
    unstable = cv > UNSTABLE_CV
    warnings = []
    if enqueue_bound:
        warnings.append(
            "throughput may be bound by enqueue time rather than GPU compute and the GPU may be under-utilised; "
            "CUDA graphs (cuda_graphs) or torch.compile may help"
        )
    if unstable:
        warnings.append(f"GPU compute time is unstable (coefficient of variation {100 * cv:.2f}%); lock the GPU clocks")
    return {
        "timer": "cuda-events",
        "gpu_compute_ms_mean": gpu_mean * 1e3,
        "gpu_compute_ms_p50": _ms(gpu.samples, 0.5),
        "gpu_compute_ms_p90": _ms(gpu.samples, 0.9),
        "gpu_compute_ms_p99": _ms(gpu.samples, 0.99),
        "gpu_compute_ms_min": min(gpu.samples) * 1e3,
        "gpu_compute_ms_max": max(gpu.samples) * 1e3,
        "gpu_compute_cv": cv,
        "host_wall_ms_mean": host.mean * 1e3,
        "host_wall_ms_p50": _ms(host.samples, 0.5),
        "host_wall_ms_p99": _ms(host.samples, 0.99),
        "host_overhead_ms": (host.mean - gpu_mean) * 1e3,
        "host_images_per_s": batch / host.mean,
        "enqueue_ms_mean": enqueue_mean * 1e3,
        "enqueue_ms_p50": _ms(enqueue, 0.5),
        "enqueue_ms_max": max(enqueue) * 1e3,
        "enqueue_bound": enqueue_bound,
        "gpu_compute_unstable": unstable,
        "host_precision_reached": host.precision_reached,
        "warnings": warnings,
    }


def gpu_measurement(
    host: TimingResult,
    gpu: TimingResult,
    enqueue_s: list[float],
    *,
    metric: str,
    batch: int,
    input_size: int,
    provenance: dict[str, Any],
) -> Measurement:
    """A throughput (images/s at ``batch``) or latency (ms) measurement from GPU compute times, with extras."""
    if metric == "throughput":
        m = throughput_measurement(gpu, batch_size=batch, input_size=input_size, provenance=provenance)
    elif metric == "latency":
        m = latency_measurement(gpu, input_size=input_size, batch_size=batch, provenance=provenance)
    else:
        raise ValueError(f"unknown metric {metric!r}")
    m.extra.update(gpu_extra(host, gpu, enqueue_s, batch))
    return m.validate()


def measure_gpu(
    timer: CudaEventTimer, settings: MeasureSettings, *, metric: str, batch: int, provenance: dict[str, Any]
) -> Measurement:
    """Run the core protocol with ``timer`` and report GPU compute time (see the module docstring)."""
    host = measure_for(timer, settings)
    gpu = gpu_result(host, timer.gpu_s, timer.enqueue_s, settings.min_samples)
    return gpu_measurement(
        host, gpu, timer.enqueue_s, metric=metric, batch=batch, input_size=settings.input_size, provenance=provenance
    )
