"""Measurement campaigns: measure many architectures on one target, committing each result.

Re-running a campaign with the same target and settings skips what is already stored, so a killed
campaign resumes where it stopped; failures are stored with their error and retried on the next run.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelnas.core.errors import AccelnasError, PluginError
from accelnas.core.model import build_model, calibrate_batchnorm
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.store import Store

log = logging.getLogger(__name__)

MEASURE_HOOKS = {"throughput": "measure_throughput", "latency": "measure_latency"}


@dataclass
class Progress:
    """One event of a running campaign, handed to the progress callback."""

    index: int  # 1-based position of the architecture
    total: int
    arch: Architecture
    metric: str | None
    status: str  # "skipped" (already stored), "ok", "failed"
    measurement: Measurement | None = None
    error: str | None = None
    elapsed: float = 0.0


@dataclass
class CampaignReport:
    target: str
    settings_key: str
    planned: int
    measured: int = 0
    already_done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _checked(result: Any, cls: type, plugin: str, hook: str) -> Any:
    if not isinstance(result, cls):
        raise PluginError(
            f"plugin {plugin!r} returned {type(result).__name__} from {hook}, expected {cls.__name__}", plugin
        )
    return result


def _checked_measurement(result: Any, plugin: str, hook: str, metric: str) -> Measurement:
    m = _checked(result, Measurement, plugin, hook)
    try:
        m.validate()
    except (ValueError, TypeError) as exc:
        raise PluginError(f"plugin {plugin!r} returned a malformed measurement from {hook}: {exc}", plugin) from None
    if m.metric != metric:
        raise PluginError(f"plugin {plugin!r} returned metric {m.metric!r} from {hook}, expected {metric!r}", plugin)
    return m


def run_campaign(
    registry: PluginRegistry,
    target: Target,
    archs: Sequence[Architecture],
    settings: MeasureSettings,
    store: Store,
    *,
    metrics: Sequence[str] | None = None,
    retry_failed: bool = True,
    progress: Callable[[Progress], None] | None = None,
) -> CampaignReport:
    """Measure ``archs`` on ``target``; every result is committed to ``store`` as soon as it exists."""
    metrics = list(metrics or target.metrics)
    unsupported = [m for m in metrics if m not in target.metrics]
    if unsupported:
        raise AccelnasError(f"target {target.name} does not measure {unsupported[0]!r}")
    key = settings.key(target)
    identity = settings.identity(target)
    report = CampaignReport(target=target.name, settings_key=key, planned=len(archs))
    start = time.perf_counter()
    state = store.status_of(target.name, key)
    emit = progress or (lambda event: None)

    for index, arch in enumerate(archs, 1):
        todo = [
            m
            for m in metrics
            if state.get((arch.id, m)) != "ok" and (retry_failed or state.get((arch.id, m)) != "failed")
        ]
        report.already_done += len(metrics) - len(todo)
        if not todo:
            emit(Progress(index, len(archs), arch, None, "skipped"))
            continue
        t0 = time.perf_counter()

        def fail(metric_list: list[str], error: str, plugin: str | None, _arch=arch, _index=index, _t0=t0) -> None:
            for metric in metric_list:
                store.record_failure(_arch, target.name, metric, key, identity, error, plugin)
                report.failed += 1
                report.errors.append(f"{_arch.id} {metric}: {error}")
                elapsed = time.perf_counter() - _t0
                emit(Progress(_index, len(archs), _arch, metric, "failed", error=error, elapsed=elapsed))

        with tempfile.TemporaryDirectory(prefix="accelnas-") as tmp:
            workdir = Path(tmp)
            try:
                model = calibrate_batchnorm(build_model(arch), settings.input_size)
                result, plugin = registry.call_first(
                    "export_model", target=target, architecture=arch, model=model, settings=settings, workdir=workdir
                )
                exported = _checked(result, ExportedModel, plugin, "export_model")
                result, plugin = registry.call_first(
                    "compile", target=target, exported=exported, settings=settings, workdir=workdir
                )
                compiled = _checked(result, CompiledModel, plugin, "compile")
            except AccelnasError as exc:
                fail(todo, str(exc), getattr(exc, "plugin", None))
                continue
            for metric in todo:
                hook = MEASURE_HOOKS[metric]
                try:
                    result, plugin = registry.call_first(hook, target=target, compiled=compiled, settings=settings)
                    measurement = _checked_measurement(result, plugin, hook, metric)
                except AccelnasError as exc:
                    fail([metric], str(exc), getattr(exc, "plugin", None))
                    continue
                store.record_ok(arch, target.name, key, identity, measurement, plugin)
                report.measured += 1
                emit(
                    Progress(
                        index, len(archs), arch, metric, "ok", measurement=measurement, elapsed=time.perf_counter() - t0
                    )
                )
            del compiled, exported, model
    report.seconds = time.perf_counter() - start
    return report
