"""Where measurements run: the measurement of one architecture, and the executors that run it.

A campaign hands :class:`Task` objects (one architecture, the metrics still missing) to an executor
and receives one :class:`Outcome` per metric, in any order, as soon as each exists. Executors:

- :class:`LocalExecutor` (the default) measures in this process;
- :class:`accelnas.core.isolation.IsolatedExecutor` measures in a child process with a timeout;
- :class:`accelnas.core.ray_executor.RayExecutor` fans tasks out to the hosts of a Ray cluster.

Child processes and remote workers rebuild the plugin registry from :func:`registry_spec`, so they
run the same plugins as the driver (installed on their own host).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelnas.core.errors import AccelnasError, PluginError, PluginLoadError, first_line
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture

log = logging.getLogger(__name__)

MEASURE_HOOKS = {"throughput": "measure_throughput", "latency": "measure_latency"}

# (plugin name, "module" or "module:Class", distribution, version)
PluginRef = tuple[str, str, "str | None", "str | None"]


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


def checked_measurement(result: Any, plugin: str | None, hook: str, metric: str) -> Measurement:
    """``result`` as a validated :class:`Measurement` of ``metric``, or :class:`PluginError`."""
    m = _checked(result, Measurement, plugin or "?", hook)
    try:
        m.validate()
    except (ValueError, TypeError) as exc:
        raise PluginError(f"plugin {plugin!r} returned a malformed measurement from {hook}: {exc}", plugin) from None
    if m.metric != metric:
        raise PluginError(f"plugin {plugin!r} returned metric {m.metric!r} from {hook}, expected {metric!r}", plugin)
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
    with tempfile.TemporaryDirectory(prefix="accelnas-") as tmp:
        workdir = Path(tmp)
        try:
            try:
                model = calibrate_batchnorm(build_model(arch), settings.input_size)
            except Exception as exc:  # e.g. out of memory at a large input size: this architecture fails
                raise AccelnasError(f"building the model failed: {type(exc).__name__}: {first_line(exc)}") from None
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
                yield outcome
            return
        for metric in metrics:
            hook = MEASURE_HOOKS[metric]
            plugin = None
            try:
                result, plugin = registry.call_first(hook, target=target, compiled=compiled, settings=settings)
                measurement = checked_measurement(result, plugin, hook, metric)
            except AccelnasError as exc:
                out = Outcome(metric, error=str(exc), plugin=getattr(exc, "plugin", plugin), where=where)
            else:
                out = Outcome(metric, measurement=measurement, plugin=plugin, where=where)
            out.seconds = time.perf_counter() - t0
            yield out
        del compiled, exported, model


# -- rebuilding the registry in another process ----------------------------------------------------
def registry_spec(registry: PluginRegistry) -> tuple[PluginRef, ...]:
    """How to rebuild ``registry`` elsewhere: each plugin's importable module (or module:Class)."""
    infos = {info.name: info for info in registry.plugins()}
    spec = []
    for name, plugin in registry.pm.list_name_plugin():
        if plugin is None:
            continue
        if inspect.ismodule(plugin):
            ref = plugin.__name__
        else:
            cls = type(plugin)
            if "<locals>" in cls.__qualname__:
                raise PluginLoadError(
                    f"plugin {name!r} is a local class and cannot be rebuilt in another process; "
                    "define it at module level or install it through the 'accelnas' entry-point group"
                )
            ref = f"{cls.__module__}:{cls.__qualname__}"
        info = infos.get(name)
        spec.append((name, ref, info.distribution if info else None, info.version if info else None))
    return tuple(sorted(spec))


def build_registry(spec: Sequence[PluginRef]) -> PluginRegistry:
    """A registry holding the plugins named by :func:`registry_spec` (imported in this process)."""
    registry = PluginRegistry()
    for name, ref, distribution, version in spec:
        module_name, _, attr = ref.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            if attr:
                for part in attr.split("."):
                    obj = getattr(obj, part)
                obj = obj()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin {name!r} ({ref}) cannot be loaded on {socket.gethostname()}: {type(exc).__name__}: {exc}"
            ) from exc
        registry.register(obj, name, distribution=distribution, version=version)
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
