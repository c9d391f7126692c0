"""Shared fixtures: the public Accel-NASBench sample beside the repo (skipped when absent), and the
benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from accelnas import hookimpl

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "accel-nasbench"
ANB_ARCHIVE = SHARED / "anb_dataset_jsons.tar.gz"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def anb_records() -> list[dict]:
    """Every result_N.json record of the shared Accel-NASBench archive."""
    if not ANB_ARCHIVE.is_file():
        pytest.skip(f"Accel-NASBench data not found at {ANB_ARCHIVE}")
    records = []
    with tarfile.open(ANB_ARCHIVE) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".json"):
                records.append(json.load(tar.extractfile(member)))
    return records


def exact_measurement(metric: str, value: float, *, batch: int, input_size: int, **fields):
    """A :class:`Measurement` of one exact value (no spread), as a fake device returns it."""
    from accelnas.core.records import UNITS, Measurement

    values = dict(mean=value, std=0.0, ci_low=value, ci_high=value, samples=[value], precision_reached=True) | fields
    return Measurement(metric=metric, unit=UNITS[metric], batch_size=batch, input_size=input_size, **values)


class Device:
    """A fake device plugin: one target whose measurements are whatever the test hands it (``latency``
    and ``throughput`` callables of the settings); ``export`` (of the architecture) may raise."""

    def __init__(self, target, latency=None, throughput=None, export=None) -> None:
        self.target, self.latency, self.throughput, self.export = target, latency, throughput, export

    @hookimpl
    def register_targets(self, register):
        register(self.target)

    @hookimpl
    def export_model(self, target, architecture):
        from accelnas.core.records import ExportedModel

        if target.name != self.target.name:
            return None
        if self.export is not None:
            self.export(architecture)
        return ExportedModel(format="none")

    @hookimpl
    def compile(self, target):
        from accelnas.core.records import CompiledModel

        return CompiledModel(handle=None) if target.name == self.target.name else None

    @hookimpl
    def measure_latency(self, target, settings):
        return self.latency(settings) if target.name == self.target.name and self.latency else None

    @hookimpl
    def measure_throughput(self, target, settings):
        return self.throughput(settings) if target.name == self.target.name and self.throughput else None
