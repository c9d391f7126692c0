"""Accuracy campaigns on a Ray cluster: one architecture per task (one GPU each), one store writer.

For thousands of architectures, training many architectures side by side scales better than
spreading each over many GPUs with DDP. Each Ray task loads the data on its node, trains one
architecture and returns the store record; the driver commits every result as it arrives (the
store's single writer), so a killed driver resumes from the store. A task whose worker or node dies
is retried by Ray (``max_retries``); a training error comes back as a stored failure.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from accelnas.core.errors import AccelnasError
from accelnas.core.ray_executor import check_reachable, init_ray
from accelnas.core.records import Measurement
from accelnas.core.space import Architecture, unique
from accelnas.core.store import Store
from accelnas.training.campaign import (
    METRIC,
    PLUGIN,
    AccuracyReport,
    Evaluation,
    accuracy_target,
    settings_for,
    stored_evaluations,
    to_measurement,
)
from accelnas.training.data import load_data
from accelnas.training.recipe import Recipe, from_dict

log = logging.getLogger(__name__)


def train_task(arch_id: str, recipe: dict[str, Any], data_spec: str, image_size: int, split_seed: int,
               workers: int) -> dict[str, Any]:  # fmt: skip
    """The body of one Ray task: train one architecture on this worker's GPU (or CPU); a record or an error."""
    import torch

    from accelnas.training.distributed import DistContext
    from accelnas.training.trainer import train

    try:
        r = from_dict(recipe)
        data = load_data(data_spec, image_size=image_size, seed=split_seed)
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        result = train(Architecture.from_string(arch_id), r, data, ctx=DistContext(device=device), workers=workers)
    except (AccelnasError, RuntimeError, ValueError) as exc:
        return {"error": str(exc) if isinstance(exc, AccelnasError) else f"{type(exc).__name__}: {exc}"}
    return {"measurement": to_measurement(result, r).to_dict()}


def _check_task_fits(gpus: float, cpus: float, *, private: bool) -> None:
    """Some node must offer a task's GPUs and CPUs, or its tasks wait forever: an error on the private
    node started here, a warning on a cluster (an autoscaler may still add such a node)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(n.get("GPU", 0) >= gpus and n.get("CPU", 0) >= cpus for n in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    message = (
        f"no Ray node offers {gpus:g} GPU(s) and {cpus:g} CPU(s) per task (the largest has "
        f"{largest.get('GPU', 0):g} GPU(s) and {largest.get('CPU', 0):g} CPU(s)); "
        "lower --gpus-per-task / --cpus-per-task"
    )
    if private:
        raise AccelnasError(message)
    log.warning("%s, or the tasks wait until such a node joins", message)


def run_ray_accuracy_campaign(
    archs: Sequence[Architecture],
    recipe: Recipe,
    data_spec: str,
    store: Store,
    *,
    address: str | None = None,
    image_size: int = 32,
    split_seed: int = 0,
    gpus_per_task: float = 1.0,
    cpus_per_task: float = 4.0,
    workers: int = 4,
    max_retries: int = 2,
    retry_failed: bool = True,
    progress: Callable[[int, int, Architecture, str, Evaluation | None, str | None], None] | None = None,
) -> AccuracyReport:
    """Train ``archs`` under ``recipe`` as Ray tasks; commit each result as it arrives.

    ``address``: a Ray cluster (``auto``, ``host:port``), or None for a private single-node Ray here.
    """
    try:
        import ray
    except ImportError:
        raise AccelnasError("Ray campaigns need Ray: pip install 'accelnas[ray]'") from None
    archs = unique(archs)  # an architecture named twice is trained once
    data = load_data(data_spec, image_size=image_size, seed=split_seed)  # the driver needs the data identity
    target = accuracy_target(data)
    key, settings = settings_for(recipe, data)
    report = AccuracyReport(target=target, settings_key=key, planned=len(archs))
    start = time.perf_counter()
    done = stored_evaluations(store, target, key)
    state = store.status_of(target, key)
    emit = progress or (lambda *args: None)
    todo = []
    for index, arch in enumerate(archs, 1):
        if arch.id in done:
            report.already_done += 1
            report.evaluations[arch.id] = done[arch.id]
            emit(index, len(archs), arch, "skipped", done[arch.id], None)
        elif retry_failed or state.get((arch.id, METRIC)) != "failed":
            todo.append((index, arch))
        else:
            report.failures_kept += 1
            emit(index, len(archs), arch, "kept-failure", None, None)
    if not todo:
        report.seconds = time.perf_counter() - start
        return report
    owns = not ray.is_initialized()
    if owns:
        address = address or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if address is None:
            kwargs["include_dashboard"] = False
        else:
            check_reachable(address)
        try:
            init_ray(ray, address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AccelnasError(f"cannot start or reach Ray at {address or 'a local node'}: {exc}") from None
    try:
        _check_task_fits(gpus_per_task, cpus_per_task, private=owns and address is None)
        remote = ray.remote(train_task).options(num_gpus=gpus_per_task, num_cpus=cpus_per_task,
                                                max_retries=max_retries, retry_exceptions=False)  # fmt: skip
        refs = {
            remote.remote(arch.id, recipe.to_dict(), data_spec, image_size, split_seed, workers): (index, arch)
            for index, arch in todo
        }
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            index, arch = refs.pop(ready[0])
            try:
                answer = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                lines = str(exc).strip().splitlines()
                answer = {"error": f"ray {type(exc).__name__}: {lines[0] if lines else ''}"}
            if "error" in answer:
                report.failed += 1
                report.errors.append(f"{arch.id}: {answer['error']}")
                store.record_failure(arch, target, METRIC, key, settings, answer["error"], PLUGIN)
                emit(index, len(archs), arch, "failed", None, answer["error"])
                continue
            m = Measurement(**answer["measurement"])
            store.record_ok(arch, target, key, settings, m, PLUGIN)
            ev = Evaluation(arch.id, m.mean, float(m.extra["top5"]), float(m.extra["wall_seconds"]),
                            float(m.extra["device_hours"]), cpu_seconds=float(m.extra["cpu_seconds"]))  # fmt: skip
            report.trained += 1
            report.evaluations[arch.id] = ev
            emit(index, len(archs), arch, "ok", ev, None)
    finally:
        if owns:
            ray.shutdown()
    report.seconds = time.perf_counter() - start
    return report
