"""Where measurements run: the measurement of one architecture, and the executors that run it.

A campaign hands :class:`Task` objects (one architecture, the metrics still missing) to an executor
and receives one :class:`Outcome` per metric, in any order, as soon as each exists. Executors:

- :class:`LocalExecutor` (the default) measures in this process;
- :class:`accelnas.core.isolation.IsolatedExecutor` measures in a child process with a timeout;
- :class:`accelnas.core.ray_executor.RayExecutor` fans tasks out to the hosts of a Ray cluster.

Child processes and remote workers rebuild the plugin registry from :func:`registry_spec`, so they
run the same plugins as the driver (installed on their own host): a plugin loaded from an entry point
is loaded again from the same entry-point value, so a module-level instance is the same there too.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from accelnas.core.errors import (
    PASS_THROUGH,
    AccelnasError,
    PluginError,
    PluginLoadError,
    TargetUnavailableError,
    describe,
    first_line,
)
from accelnas.core.plugins import ENTRY_POINT_GROUP, PluginRegistry
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.core.workdirs import WorkFolder

log = logging.getLogger(__name__)

MEASURE_HOOKS = {"throughput": "measure_throughput", "latency": "measure_latency"}

# (plugin name, reference, distribution, version, how): how the reference is loaded is "entry_point"
# (an entry point's value, loaded with EntryPoint.load()), "module" or "class" ("module:Class", called
# with no arguments). Plain strings and None, so a spec travels as JSON.
PluginRef = tuple[str, str, "str | None", "str | None", str]


@dataclass(frozen=True)
class Task:
    """Measure ``metrics`` of ``arch``; ``index`` is its 1-based place in the campaign, ``attempt`` counts tries."""

    index: int
    arch: Architecture
    metrics: tuple[str, ...]
    attempt: int = 1


@dataclass
class Outcome:
    """The result of one metric of one task: a validated measurement, or an error."""

    metric: str
    measurement: Measurement | None = None
    error: str | None = None
    plugin: str | None = None
    seconds: float = 0.0
    where: dict[str, Any] = field(default_factory=dict)  # executor, host, pid
    unavailable: bool = False  # the plugin said the device is gone (TargetUnavailableError): not a result

    @property
    def ok(self) -> bool:
        return self.measurement is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for sending between processes."""
        return {
            "metric": self.metric,
            "measurement": self.measurement.to_dict() if self.measurement else None,
            "error": self.error,
            "plugin": self.plugin,
            "seconds": self.seconds,
            "where": self.where,
            "unavailable": self.unavailable,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        m = data.get("measurement")
        return cls(
            metric=data["metric"],
            measurement=Measurement(**m) if m else None,
            error=data.get("error"),
            plugin=data.get("plugin"),
            seconds=float(data.get("seconds") or 0.0),
            where=dict(data.get("where") or {}),
            unavailable=bool(data.get("unavailable")),
        )


def failed(metrics: Sequence[str], error: str, plugin: str | None = None, **where: Any) -> list[Outcome]:
    """One failure outcome per metric."""
    return [Outcome(metric, error=error, plugin=plugin, where=dict(where)) for metric in metrics]


def settings_to_dict(settings: MeasureSettings) -> dict[str, Any]:
    return settings.to_dict()


def settings_from_dict(data: dict[str, Any]) -> MeasureSettings:
    values = dict(data)
    values["options"] = tuple(sorted(dict(values.get("options") or {}).items()))
    return MeasureSettings(**values)


# -- measuring one architecture --------------------------------------------------------------------
def _checked(result: Any, cls: type, plugin: str, hook: str) -> Any:
    if not isinstance(result, cls):
        raise PluginError(
            f"plugin {plugin!r} returned {type(result).__name__} from {hook}, expected {cls.__name__}", plugin
        )
    return result


def expected_batch(metric: str, target: Target, settings: MeasureSettings) -> int:
    """The batch a measurement of ``metric`` must report: the campaign's throughput batch, or the
    target's latency batch (1 unless the target declares another)."""
    return settings.batch_for(target) if metric == "throughput" else target.latency_batch_size


def checked_measurement(
    result: Any,
    plugin: str | None,
    hook: str,
    metric: str,
    *,
    target: Target | None = None,
    settings: MeasureSettings | None = None,
) -> Measurement:
    """``result`` as a validated :class:`Measurement` of ``metric``, or :class:`PluginError`.

    With ``target`` and ``settings`` it must also be of the campaign's input size and of the batch
    the result is stored under (:func:`expected_batch`).
    """
    m = _checked(result, Measurement, plugin or "?", hook)
    try:
        m.validate()
    except Exception as exc:  # any failure to check the plugin's data makes it malformed
        detail = first_line(exc) if isinstance(exc, ValueError) else describe(exc)
        raise PluginError(f"plugin {plugin!r} returned a malformed measurement from {hook}: {detail}", plugin) from None
    if m.metric != metric:
        raise PluginError(f"plugin {plugin!r} returned metric {m.metric!r} from {hook}, expected {metric!r}", plugin)
    if target is not None and settings is not None:
        if m.input_size != settings.input_size:
            raise PluginError(
                f"plugin {plugin!r} returned a measurement at input size {m.input_size} from {hook}, "
                f"but the campaign measures at {settings.input_size}",
                plugin,
            )
        batch = expected_batch(metric, target, settings)
        if m.batch_size != batch:
            where = "the campaign's" if metric == "throughput" else f"{target.name}'s latency"
            raise PluginError(
                f"plugin {plugin!r} returned a {metric} measurement at batch {m.batch_size} from {hook}, "
                f"but {where} batch is {batch}",
                plugin,
            )
    return m


def worker_info(executor: str) -> dict[str, Any]:
    """Who measured: the executor kind, host name and process id."""
    return {"executor": executor, "host": socket.gethostname(), "pid": os.getpid()}


def measure_outcomes(
    registry: PluginRegistry,
    target: Target,
    arch: Architecture,
    metrics: Sequence[str],
    settings: MeasureSettings,
    *,
    executor: str = "local",
) -> Iterator[Outcome]:
    """Export and compile ``arch`` once, then yield one outcome per metric as each is measured."""
    from accelnas.core.model import build_model, calibrate_batchnorm

    where = worker_info(executor)
    t0 = time.perf_counter()
    if not target.available:
        yield from failed(metrics, f"target {target.name} is unavailable on {where['host']}: {target.reason}", **where)
        return
    with WorkFolder() as tmp:
        workdir = Path(tmp)
        try:
            try:
                model = calibrate_batchnorm(build_model(arch), settings.input_size) if target.needs_model else None
            except Exception as exc:  # e.g. out of memory at a large input size: this architecture fails
                raise AccelnasError(f"building the model failed: {describe(exc)}") from None
            result, plugin = registry.call_first(
                "export_model", target=target, architecture=arch, model=model, settings=settings, workdir=workdir
            )
            exported = _checked(result, ExportedModel, plugin, "export_model")
            result, plugin = registry.call_first(
                "compile", target=target, exported=exported, settings=settings, workdir=workdir
            )
            compiled = _checked(result, CompiledModel, plugin, "compile")
        except AccelnasError as exc:
            for outcome in failed(metrics, str(exc), getattr(exc, "plugin", None), **where):
                outcome.seconds = time.perf_counter() - t0
                outcome.unavailable = isinstance(exc, TargetUnavailableError)
                yield outcome
            return
        for metric in metrics:
            hook = MEASURE_HOOKS[metric]
            plugin = None
            try:
                result, plugin = registry.call_first(hook, target=target, compiled=compiled, settings=settings)
                measurement = checked_measurement(result, plugin, hook, metric, target=target, settings=settings)
            except AccelnasError as exc:
                out = Outcome(metric, error=str(exc), plugin=getattr(exc, "plugin", plugin), where=where)
                out.unavailable = isinstance(exc, TargetUnavailableError)
            else:
                measurement.provenance = {**measurement.provenance, "plugin": registry.identity(plugin)}
                out = Outcome(metric, measurement=measurement, plugin=plugin, where=where)
            out.seconds = time.perf_counter() - t0
            yield out
        del compiled, exported, model


# -- rebuilding the registry in another process ----------------------------------------------------
def _needs_arguments(cls: type) -> bool:
    """True when ``cls()`` cannot be called without arguments."""
    try:
        inspect.signature(cls).bind()
    except TypeError:
        return True
    except ValueError:  # no signature to inspect (a builtin): let the other process try
        return False
    return False


def registry_spec(registry: PluginRegistry) -> tuple[PluginRef, ...]:
    """How to rebuild ``registry`` elsewhere, as plain data (see :data:`PluginRef`).

    A plugin loaded from an entry point is referenced by the entry point's value; one registered
    directly by its module, or by its class when the class can be called without arguments.
    """
    infos = {info.name: info for info in registry.plugins() if info.error is None}
    spec = []
    for name, plugin in registry.pm.list_name_plugin():
        if plugin is None:
            continue
        info = infos.get(name)
        if info is not None and info.entry_point:
            ref, how = info.entry_point, "entry_point"
        elif inspect.ismodule(plugin):
            ref, how = plugin.__name__, "module"
        else:
            cls = type(plugin)
            if "<locals>" in cls.__qualname__:
                raise PluginLoadError(
                    f"plugin {name!r} is a local class and cannot be rebuilt in another process; "
                    "define it at module level or install it through the 'accelnas' entry-point group"
                )
            if _needs_arguments(cls):
                raise PluginLoadError(
                    f"plugin {name!r} is an instance of {cls.__qualname__}, which takes arguments, and cannot be "
                    "rebuilt in another process; install it through the 'accelnas' entry-point group"
                )
            ref, how = f"{cls.__module__}:{cls.__qualname__}", "class"
        spec.append((name, ref, info.distribution if info else None, info.version if info else None, how))
    return tuple(sorted(spec))


def _load(name: str, ref: str, how: str) -> Any:
    """The plugin object a :data:`PluginRef` names, loaded in this process."""
    if how == "entry_point":
        return metadata.EntryPoint(name=name, value=ref, group=ENTRY_POINT_GROUP).load()
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    if how == "class":
        for part in attr.split("."):
            obj = getattr(obj, part)
        obj = obj()
    return obj


def build_registry(spec: Sequence[PluginRef]) -> PluginRegistry:
    """A registry holding the plugins named by :func:`registry_spec` (loaded in this process)."""
    registry = PluginRegistry()
    for name, ref, distribution, version, how in spec:
        try:
            obj = _load(name, ref, how)
        except PASS_THROUGH:
            raise
        except BaseException as exc:
            raise PluginLoadError(
                f"plugin {name!r} ({ref}) cannot be loaded on {socket.gethostname()}: {type(exc).__name__}: "
                f"{first_line(exc)}"
            ) from exc
        if distribution:  # the version installed here, which a worker on another host may not share
            with contextlib.suppress(metadata.PackageNotFoundError):
                version = metadata.version(distribution)
        registry.register(
            obj, name, distribution=distribution, version=version, entry_point=ref if how == "entry_point" else None
        )
    registry.check_pending()
    return registry


_REGISTRIES: dict[tuple[PluginRef, ...], PluginRegistry] = {}


def cached_registry(spec: Sequence[PluginRef]) -> PluginRegistry:
    """:func:`build_registry`, once per process and spec (workers run many tasks)."""
    key = tuple(tuple(entry) for entry in spec)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = build_registry(key)
    return _REGISTRIES[key]


# -- executors -------------------------------------------------------------------------------------
class Executor:
    """Runs tasks and hands back outcomes. Each submitted task's metrics each get exactly one outcome."""

    name = "executor"

    def open(self, registry: PluginRegistry, target: Target, settings: MeasureSettings) -> None:
        """Prepare to run tasks of one campaign."""

    @property
    def capacity(self) -> int:
        """How many tasks may be in flight at once."""
        return 1

    def submit(self, task: Task) -> None:
        raise NotImplementedError

    def poll(self, timeout: float | None) -> list[tuple[Task, Outcome]]:
        """Outcomes that arrived, waiting up to ``timeout`` seconds for the first (None: until one arrives)."""
        raise NotImplementedError

    def cancel(self) -> None:
        """Drop every task in flight; their missing outcomes are never delivered."""

    def close(self) -> None:
        self.cancel()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Measures in this process, one metric per :meth:`poll`."""

    name = "local"

    def __init__(self) -> None:
        self._queue: deque[Task] = deque()
        self._current: tuple[Task, Iterator[Outcome]] | None = None
        self._registry: PluginRegistry | None = None
        self._target: Target | None = None
        self._settings: MeasureSettings | None = None

    def open(self, registry: PluginRegistry, target: Target, settings: MeasureSettings) -> None:
        self._registry, self._target, self._settings = registry, target, settings

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def poll(self, timeout: float | None) -> list[tuple[Task, Outcome]]:
        if self._registry is None or self._target is None or self._settings is None:
            raise RuntimeError("LocalExecutor.open() was not called")
        while True:
            if self._current is None:
                if not self._queue:
                    return []
                task = self._queue.popleft()
                gen = measure_outcomes(self._registry, self._target, task.arch, task.metrics, self._settings)
                self._current = (task, gen)
            task, gen = self._current
            try:
                return [(task, next(gen))]
            except StopIteration:
                self._current = None

    def cancel(self) -> None:
        if self._current is not None:
            self._current[1].close()  # type: ignore[attr-defined]
            self._current = None
        self._queue.clear()
