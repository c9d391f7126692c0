"""What the three ``tpu/*`` backends share: a compiled XLA program per batch size, timed by the core.

Each backend subclasses :class:`XlaProgram` with an explicit compile step per input shape
(:meth:`XlaProgram._compile`) that returns a *blocking* call (it returns only once the device has
finished: ``block_until_ready``, a host read of a scalar, ``torch_xla.sync(wait=True)``). The
compile time is measured separately from the timed phase and lands in ``Measurement.extra``; the
timed phase is :func:`accelnas.core.timing.measure_for`, so warm-up, stopping rule and statistics
match every other target.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from accelnas.core.provenance import host_provenance
from accelnas.core.records import Measurement, MeasureSettings, Target
from accelnas.core.timing import latency_measurement, measure_for, throughput_measurement
from accelnas.plugins.tpu_xla.detect import paper_batch
from accelnas.plugins.tpu_xla.options import XlaOptions

log = logging.getLogger(__name__)


def random_input(batch: int, input_size: int, seed: int = 0) -> np.ndarray:
    """A float32 NCHW batch of standard-normal images (the same for every backend and run)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)


class XlaProgram(ABC):
    """A network compiled by XLA for one backend, device set and dtype; one executable per batch."""

    backend: str = ""
    compile_step: str = ""  # how the explicit compile step compiles, for provenance

    def __init__(
        self,
        *,
        input_size: int,
        options: XlaOptions,
        platform: str,
        device_kind: str,
        devices: list[str],
        versions: dict[str, Any],
    ) -> None:
        self.input_size = input_size
        self.options = options
        self.platform = platform
        self.device_kind = device_kind
        self.devices = devices
        self.versions = versions
        self.compile_seconds: dict[int, float] = {}
        self._calls: dict[int, Callable[[], Any]] = {}

    @abstractmethod
    def _compile(self, batch: int) -> Callable[[], Any]:
        """Compile for ``batch`` images and return a call that runs once and blocks until done."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, shape ``(N, classes)``) for an NCHW float32 batch, through the compiled program."""

    def parallel(self, batch: int) -> bool:
        """Whether ``batch`` runs over all devices (throughput with ``devices=all``; never batch 1)."""
        return self.options.all_devices and batch > 1 and len(self.devices) > 1

    def runner(self, batch: int) -> Callable[[], Any]:
        """The blocking call for ``batch``, compiled on first use with its compile time recorded."""
        if batch not in self._calls:
            start = time.perf_counter()
            self._calls[batch] = self._compile(batch)
            self.compile_seconds[batch] = time.perf_counter() - start
            log.info("%s: compiled batch %d in %.2fs", self.backend, batch, self.compile_seconds[batch])
        return self._calls[batch]

    def default_batch(self) -> int:
        return paper_batch(self.device_kind)

    def facts(self) -> dict[str, Any]:
        """Backend facts for ``CompiledModel.info`` and provenance."""
        return {
            "backend": self.backend,
            "compile_step": self.compile_step,
            "xla_platform": self.platform,
            "device_kind": self.device_kind,
            "on_tpu": self.platform == "tpu",
            "devices": list(self.devices),
            "dtype": self.options.dtype,
            "devices_option": "all" if self.options.all_devices else 1,
            "denormals": "batchnorm-calibrated",
            **self.versions,
        }


def batch_for(target: Target, program: XlaProgram, settings: MeasureSettings) -> int:
    """The throughput batch: the campaign's (``settings.batch_for``), which its results are keyed by.

    Where the device the runtime reports has another paper batch (a TPU v2 listed as a v3 by its
    PCI id, say), the listed batch is still measured, with a warning naming the paper's.
    """
    batch = settings.batch_for(target)
    paper = program.default_batch()
    if batch == target.default_batch_size and paper != batch:  # the listed default, not a chosen batch
        log.warning(
            "%s: measuring batch %d; the paper's batch for %s is %d (--batch-size %d measures that one)",
            target.name,
            batch,
            program.device_kind,
            paper,
            paper,
        )
    return batch


def _measure(program: XlaProgram, batch: int, settings: MeasureSettings, metric: str) -> Measurement:
    call = program.runner(batch)
    result = measure_for(call, settings)
    provenance = host_provenance() | program.facts() | {"batch_size": batch}
    if metric == "throughput":
        m = throughput_measurement(result, batch_size=batch, input_size=settings.input_size, provenance=provenance)
    else:
        m = latency_measurement(result, batch_size=batch, input_size=settings.input_size, provenance=provenance)
    devices = len(program.devices) if program.parallel(batch) else 1
    m.extra |= {
        "compile_seconds": round(program.compile_seconds[batch], 4),
        "parallel_devices": devices,
        "batch_per_device": batch // devices,
    }
    return m.validate()


def measure_throughput(target: Target, program: XlaProgram, settings: MeasureSettings) -> Measurement:
    """Images/s at the settings' batch, or the paper's batch for the device kind when none was given."""
    return _measure(program, batch_for(target, program, settings), settings, "throughput")


def measure_latency(program: XlaProgram, settings: MeasureSettings) -> Measurement:
    """Milliseconds per image at batch 1 on one device."""
    return _measure(program, 1, settings, "latency")
