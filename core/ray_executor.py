"""Campaigns across machines on a Ray cluster.

Every device host joins the cluster advertising a custom resource named after its target::

    ray start --address HEAD:6379 --resources '{"accelnas/cpu/onnxruntime": 1}'

and each measurement task asks for one unit of it, so tasks land only on hosts of that target and at
most as many run at once on a host as it advertises. Results stream back to the driver, whose single
store writer commits each as it arrives. A task whose worker process or node dies is retried by Ray
(``max_retries``) on any live node with the resource; when the retries are spent it comes back as a
failure, which the campaign's retry policy may submit again. When the driver dies, re-running the
campaign resumes from the store.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from accelnas.core.errors import AccelnasError, PluginLoadError
from accelnas.core.executors import (
    Executor,
    Outcome,
    Task,
    cached_registry,
    failed,
    measure_outcomes,
    registry_spec,
    settings_from_dict,
    settings_to_dict,
    worker_info,
)
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import MeasureSettings, Target
from accelnas.core.space import Architecture

log = logging.getLogger(__name__)

RESOURCE_PREFIX = "accelnas/"


def resource_name(target: str) -> str:
    """The Ray custom resource a host of ``target`` advertises, e.g. ``accelnas/cpu/onnxruntime``."""
    return RESOURCE_PREFIX + target


def _where() -> dict[str, Any]:
    where = worker_info("ray")
    try:
        import ray

        where["node"] = ray.get_runtime_context().get_node_id()
    except Exception:  # outside a Ray worker
        pass
    return where


def init_ray(ray: Any, **kwargs: Any) -> None:
    """``ray.init(**kwargs)``, keeping this process's SIGTERM handler: Ray's exits at once, skipping the
    clean-up and the one-line message a stopped command gives."""
    main = threading.current_thread() is threading.main_thread()
    saved = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(**kwargs)
    finally:
        if saved is not None:
            signal.signal(signal.SIGTERM, saved)


# what an HTTP/2 client sends first (its preface and an empty SETTINGS frame); a gRPC server, as Ray's
# GCS and client server are, answers with a SETTINGS frame (type 4, the frame header's fourth byte)
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast with a clear error when nothing at a ``host:port`` address answers as a Ray cluster does
    (Ray itself retries for many minutes, also at a port where another service, such as the dashboard,
    listens)."""
    if "://" in address and not address.startswith("ray://"):
        raise AccelnasError(
            f"{address} is not a Ray cluster address: give the head's host:port (port 6379 unless "
            "`ray start --head --port` chose another), not a URL"
        )
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms are Ray's to resolve
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address: [::1]:6379
    try:
        conn = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as exc:
        raise AccelnasError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return  # the answer is TLS's, not HTTP/2's
        reply = b""
        try:
            conn.sendall(_HTTP2_HELLO)
            while len(reply) < 4 and (chunk := conn.recv(4 - len(reply))):
                reply += chunk
        except OSError:  # reset or silent: not a gRPC server
            pass
    if len(reply) < 4 or reply[3] != 4:
        raise AccelnasError(
            f"{address} does not answer as a Ray cluster does (another service listens there, such as the "
            "dashboard): give the head's host:port (port 6379 unless `ray start --head --port` chose another)"
        )


_ISOLATED: dict[Any, Any] = {}


def measure_task(
    spec: list[list[Any]],
    target_name: str,
    settings: dict[str, Any],
    arch_id: str,
    metrics: list[str],
    isolate: bool = False,
    task_timeout: float | None = None,
) -> list[dict[str, Any]]:
    """The body of one Ray task: measure ``metrics`` of one architecture on this worker's host."""
    metrics = list(dict.fromkeys(metrics))  # one outcome per metric, however often named
    where = _where()
    try:
        registry = cached_registry([tuple(entry) for entry in spec])
    except PluginLoadError as exc:
        return [o.to_dict() for o in failed(metrics, str(exc), **where)]
    target = registry.target(target_name, require_available=False)
    measure_settings = settings_from_dict(settings)
    arch = Architecture.from_string(arch_id)
    if not isolate:
        outcomes = list(measure_outcomes(registry, target, arch, metrics, measure_settings, executor="ray"))
    else:
        from accelnas.core.isolation import IsolatedExecutor

        key = (repr(spec), target_name, repr(sorted(settings.items())), task_timeout)
        executor = _ISOLATED.get(key)
        if executor is None:  # one warm child per worker process and campaign
            executor = _ISOLATED[key] = IsolatedExecutor(task_timeout, label="ray+isolated")
            executor.open(registry, target, measure_settings)
        executor.submit(Task(0, arch, tuple(metrics)))
        outcomes = []
        while len(outcomes) < len(metrics):
            outcomes += [outcome for _, outcome in executor.poll(None)]
    for outcome in outcomes:
        outcome.where = {**outcome.where, **{k: v for k, v in where.items() if k == "node"}}
    return [o.to_dict() for o in outcomes]


class RayExecutor(Executor):
    """Submits tasks to a Ray cluster (``address``; None: ``RAY_ADDRESS`` or a local single-node Ray).

    ``max_retries`` bounds Ray's retries of a task whose worker or node died; ``in_flight`` bounds the
    submitted tasks (default: twice the cluster's units of the target's resource, at least 2).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        max_retries: int = 3,
        isolate: bool = False,
        task_timeout: float | None = None,
        in_flight: int | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.address = address
        self.max_retries = max_retries
        self.isolate = isolate
        self.task_timeout = task_timeout
        self.in_flight = in_flight
        self.resource = ""
        self._refs: dict[Any, Task] = {}
        self._owns_ray = False
        self._remote: Any = None
        self._args: tuple[Any, ...] = ()
        self._capacity = 2
        self._checked_at = 0.0

    def open(self, registry: PluginRegistry, target: Target, settings: MeasureSettings) -> None:
        try:
            import ray
        except ImportError:
            raise AccelnasError("the ray executor needs Ray: pip install 'accelnas[ray]'") from None
        self.resource = resource_name(target.name)
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
            if address is None:  # a private single-node cluster that serves this target itself
                kwargs |= {"num_cpus": 1, "resources": {self.resource: 1}, "include_dashboard": False}
            if address is not None:
                check_reachable(address)
            try:
                init_ray(ray, address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = ""
                if address is not None and os.environ.get("RAY_AUTH_MODE") != "token":
                    hint = (
                        " (if the cluster uses token authentication, set RAY_AUTH_MODE=token and its token in "
                        "RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                    )
                message = " ".join(str(exc).split())
                raise AccelnasError(f"cannot connect to the Ray cluster at {address}: {message}{hint}") from None
            self._owns_ray = True
        self._remote = ray.remote(measure_task)
        self._args = ([list(e) for e in registry_spec(registry)], target.name, settings_to_dict(settings))
        if self._units() == 0:
            log.warning(
                "no node of the Ray cluster advertises %r yet; tasks wait until one joins "
                "(ray start --address ADDRESS --resources '{\"%s\": 1}')",
                self.resource,
                self.resource,
            )

    def _units(self) -> int:
        import ray

        return int(ray.cluster_resources().get(self.resource, 0))

    @property
    def capacity(self) -> int:
        if self.in_flight:
            return self.in_flight
        if time.monotonic() - self._checked_at > 10:  # hosts join and leave
            self._capacity = max(2, 2 * self._units())
            self._checked_at = time.monotonic()
        return self._capacity

    def submit(self, task: Task) -> None:
        ref = self._remote.options(
            resources={self.resource: 1},
            num_cpus=0,
            max_retries=self.max_retries,
            retry_exceptions=False,
            name=f"accelnas measure {task.arch.id}",
        ).remote(*self._args, task.arch.id, list(task.metrics), self.isolate, self.task_timeout)
        self._refs[ref] = task

    def poll(self, timeout: float | None) -> list[tuple[Task, Outcome]]:
        import ray

        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out: list[tuple[Task, Outcome]] = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                outcomes = [Outcome.from_dict(d) for d in ray.get(ref)]
            except ray.exceptions.RayError as exc:
                text = str(exc).strip().splitlines()
                reason = text[0] if text else type(exc).__name__
                error = f"ray {type(exc).__name__} (after up to {self.max_retries} retries): {reason}"
                log.warning("task for %s failed: %s", task.arch.id, error)
                outcomes = failed(task.metrics, error, executor="ray")
            out += [(task, outcome) for outcome in outcomes]
        return out

    def cancel(self) -> None:
        if not self._refs:
            return
        import ray

        for ref in self._refs:
            try:
                ray.cancel(ref, force=True)
            except Exception as exc:  # already finished or its node is gone
                log.debug("cancel: %s", exc)
        self._refs.clear()

    def close(self) -> None:
        self.cancel()
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False
