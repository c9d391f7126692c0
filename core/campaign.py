"""Measurement campaigns: measure many architectures on one target, committing each result.

Re-running a campaign with the same target and settings skips what is already stored, so a killed
campaign resumes where it stopped; failures are stored with their error and retried on the next run.

The campaign is the single store writer: an executor (in-process by default, a child process per
task, or a Ray cluster) runs the measurements and hands back outcomes, and each is committed as soon
as it arrives. Transient failures are tried again within the run according to the target's
:class:`~accelnas.core.retry.RetryPolicy`; a time budget ends the run early, leaving the rest pending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import logging
import math
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from accelnas.core import termination
from accelnas.core.errors import AccelnasError, PluginError
from accelnas.core.executors import MEASURE_HOOKS, Executor, LocalExecutor, Outcome, Task, checked_measurement
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import Measurement, MeasureSettings, Target, positive_int
from accelnas.core.retry import RetryPolicy, policy_for
from accelnas.core.space import Architecture, unique
from accelnas.core.store import Store, release_marks

log = logging.getLogger(__name__)

CRASHES_TO_SKIP = 2  # deaths of the measuring process on one architecture after which a run leaves it failed

__all__ = ["MEASURE_HOOKS", "CampaignReport", "Progress", "run_campaign"]


@dataclass
class Progress:
    """One event of a running campaign, handed to the progress callback."""

    index: int  # 1-based position of the architecture
    total: int
    arch: Architecture
    metric: str | None
    status: str  # "skipped" (already stored), "kept-failure" (a stored failure not retried), "ok", "failed"
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
    retried: int = 0  # transient failures tried again within this run
    pending: int = 0  # measurements left for a later run (time budget spent, failure limit reached)
    budget_exhausted: bool = False
    executor: str = "local"
    failure_limit_reached: bool = False  # stopped after ``max_failures`` failed measurements
    unavailable: str | None = None  # why the run stopped: a plugin said its device is gone
    crashed: int = 0  # of ``failed``, left so without measuring: their architecture's process died twice
    failures_kept: int = 0  # stored failures not measured again (``retry_failed=False``)


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
    executor: Executor | None = None,
    retry: RetryPolicy | Mapping[str, RetryPolicy] | None = None,
    time_budget: float | None = None,
    max_failures: int | None = None,
) -> CampaignReport:
    """Measure ``archs`` on ``target``; every result is committed to ``store`` as soon as it exists.

    ``executor`` runs the measurements (default: :class:`~accelnas.core.executors.LocalExecutor`);
    ``retry`` is a policy or a {target, device or "*": policy} mapping; ``time_budget`` (seconds)
    stops submitting and cancels what is in flight once spent; ``max_failures`` does the same once
    that many measurements have failed for good (a plugin failing on every architecture), and so does
    a hook raising :class:`~accelnas.core.errors.TargetUnavailableError` (its device is gone: that
    measurement is not stored). What is left stays pending for the next run. Before anything is
    measured, a hook that no loaded plugin implements is an error.
    """
    metrics = list(dict.fromkeys(metrics or target.metrics))  # a metric named twice is measured once
    archs = unique(archs)  # an architecture named twice is measured once
    unsupported = [m for m in metrics if m not in target.metrics]
    if unsupported:
        raise AccelnasError(f"target {target.name} does not measure {unsupported[0]!r}")
    if time_budget is not None and not 0 < time_budget < math.inf:
        raise AccelnasError(f"the time budget must be a positive number of seconds, got {time_budget}")
    if max_failures is not None:
        max_failures = positive_int(max_failures, "max_failures")
    target.check_options(settings)
    for hook in ("export_model", "compile", *(MEASURE_HOOKS[m] for m in metrics)):
        if not registry.implements(hook, target):
            raise AccelnasError(
                f"no loaded plugin implements {hook} for {target.name}, which measuring it needs (neither its "
                f"plugin {target.plugin!r} nor a plugin outside accelnas; the built-in ones serve only their own)"
            )
    # the batch is decided here, once: a worker on another host (whose target may list another default)
    # measures at the batch the results are keyed and checked by
    settings = dataclasses.replace(settings, batch_size=settings.batch_for(target))
    executor = executor or LocalExecutor()
    policy = policy_for(target.name, retry)
    key = settings.key(target)
    identity = settings.identity(target)
    report = CampaignReport(target=target.name, settings_key=key, planned=len(archs), executor=executor.name)
    start = time.perf_counter()
    deadline = start + time_budget if time_budget is not None else float("inf")
    emit = progress or (lambda event: None)

    adopt_typed_results(store, target, settings)
    store.record_plan(archs, target.name, metrics, key, identity)
    # measuring in this process: a crash of a plugin's native code ends it; note what it measures, so
    # that the next run says so and, after a second death on one architecture, leaves it to --isolate
    in_process = isinstance(executor, LocalExecutor)
    me = _process(os.getpid())
    deaths = store.died_measuring(target.name, key, _alive)
    for arch_id, n in deaths.items():
        if arch_id in {a.id for a in archs}:
            skipped = in_process and n >= CRASHES_TO_SKIP
            log.warning(
                "%s: a process measuring %s died %s (killed, or a crash in the plugin?); %s", target.name, arch_id,
                "once" if n == 1 else f"{n} times", "it is left failed: --isolate measures it in a child process "
                "that may crash" if skipped else "it is measured again",
            )  # fmt: skip
    state = store.status_of(target.name, key)
    queue: list[Task] = []
    for index, arch in enumerate(archs, 1):
        stored = {m: state.get((arch.id, m)) for m in metrics}
        todo = tuple(m for m in metrics if stored[m] != "ok" and (retry_failed or stored[m] != "failed"))
        if todo and in_process and deaths.get(arch.id, 0) >= CRASHES_TO_SKIP:
            error = (
                f"the process measuring it died {deaths[arch.id]} times (a crash in the plugin?); "
                "--isolate measures it in a child process"
            )
            for metric in todo:
                if stored[metric] != "failed":  # told once; a rerun does not count it again
                    store.record_failure(arch, target.name, metric, key, identity, error, target.plugin)
                report.failed += 1
                report.crashed += 1
                report.errors.append(f"{arch.id} {metric}: {error}")
                emit(Progress(index, len(archs), arch, metric, "failed", error=error))
            continue
        kept = sum(stored[m] == "failed" and m not in todo for m in metrics)
        report.failures_kept += kept
        report.already_done += len(metrics) - len(todo) - kept
        if todo:
            queue.append(Task(index, arch, todo))
        else:
            emit(Progress(index, len(archs), arch, None, "kept-failure" if kept else "skipped"))
    queue.reverse()  # pop() from the end keeps the campaign order
    wanted = {(a.id, m) for a in archs for m in metrics}
    if report.already_done and (coarse := store.looser_than(target.name, key, settings.precision, wanted)):
        log.warning(
            "%d stored %s measurement(s) of this run are less precise than ±%g%%; they are kept, not measured "
            "again: measure into a new store to replace them", coarse, target.name, 100 * settings.precision,
        )  # fmt: skip

    delayed: list[tuple[float, int, Task]] = []  # (ready time, tie-break, task) of retries
    waiting: dict[Task, set[str]] = {}  # tasks in flight -> metrics without an outcome yet
    to_retry: dict[Task, list[str]] = {}

    lost = 0  # measurements the device went away during: pending, not failed

    def commit(task: Task, outcome: Outcome) -> None:
        nonlocal lost
        arch, metric = task.arch, outcome.metric
        if outcome.unavailable:
            lost += 1
            if report.unavailable is None:
                report.unavailable = outcome.error or f"target {target.name} is unavailable"
                log.error("%s: stopping the campaign: %s", target.name, report.unavailable)
            return
        if outcome.ok:
            try:  # validated where it was measured; checked again after the trip between processes
                measurement = checked_measurement(
                    outcome.measurement, outcome.plugin, MEASURE_HOOKS[metric], metric, target=target, settings=settings
                )
            except PluginError as exc:
                outcome = Outcome(metric, error=str(exc), plugin=outcome.plugin, where=outcome.where)
            else:
                measurement.provenance = {**measurement.provenance, "measured_by": outcome.where}
                if store.record_ok(arch, target.name, key, identity, measurement, outcome.plugin):
                    report.measured += 1
                else:  # another run (a shard over the same store) committed it first; the stored row stays
                    report.already_done += 1
                emit(Progress(task.index, len(archs), arch, metric, "ok", measurement, elapsed=outcome.seconds))
                return
        error = outcome.error or "unknown error"
        where = {"measured_by": outcome.where} if outcome.where else None
        store.record_failure(arch, target.name, metric, key, identity, error, outcome.plugin, where)
        if policy.should_retry(error, task.attempt):
            to_retry.setdefault(task, []).append(metric)
            report.retried += 1
            error = f"{error} (attempt {task.attempt}/{policy.max_attempts}; retrying)"
        else:
            report.failed += 1
            report.errors.append(f"{arch.id} {metric}: {error}")
        emit(Progress(task.index, len(archs), arch, metric, "failed", error=error, elapsed=outcome.seconds))

    executor.open(registry, target, settings)
    # a process the SIGTERM watchdog ends runs no finally: it releases its marks from that thread
    forget = (
        termination.at_hard_exit(partial(_release_at_exit, store.path, target.name, key, me)) if in_process else None
    )
    try:
        while queue or delayed or waiting:
            now = time.perf_counter()
            if now >= deadline:
                report.budget_exhausted = True
                executor.cancel()
                break
            if max_failures is not None and report.failed - report.crashed >= max_failures:
                report.failure_limit_reached = True
                executor.cancel()
                break
            if report.unavailable is not None:
                executor.cancel()
                break
            while delayed and delayed[0][0] <= now:
                queue.append(heapq.heappop(delayed)[2])
            while queue and len(waiting) < executor.capacity:
                task = queue.pop()
                waiting[task] = set(task.metrics)
                if in_process:
                    store.mark_measuring(task.arch.id, target.name, key, me)
                executor.submit(task)
            if not waiting:  # only retries waiting for their backoff
                time.sleep(max(0.0, min(delayed[0][0], deadline) - time.perf_counter()))
                continue
            timeout = min(deadline, delayed[0][0] if delayed else float("inf"), now + 5.0) - now
            for task, outcome in executor.poll(max(0.0, timeout)):
                if outcome.metric not in waiting.get(task, ()):
                    log.warning("ignoring a second outcome for %s %s", task.arch.id, outcome.metric)
                    continue
                waiting[task].discard(outcome.metric)
                commit(task, outcome)
                if not waiting[task]:
                    del waiting[task]
                    if in_process or task.arch.id in deaths:  # measured (with --isolate too): no more deaths
                        store.done_measuring(target.name, key, task.arch.id)
                    again = to_retry.pop(task, None)
                    if again:
                        ready = time.perf_counter() + policy.delay(task.attempt)
                        retry_task = Task(task.index, task.arch, tuple(again), task.attempt + 1)
                        heapq.heappush(delayed, (ready, id(retry_task), retry_task))
    finally:
        if forget is not None:
            forget()
        executor.close()
        if in_process:  # stopped or interrupted, not dead: what was left is no crash
            store.released_by(target.name, key, me)
    report.pending = sum(len(t.metrics) for t in queue) + sum(len(t.metrics) for _, _, t in delayed)
    report.pending += sum(len(left) for left in waiting.values()) + lost
    report.pending += sum(len(again) for again in to_retry.values())  # failed, their retry not yet submitted
    report.seconds = time.perf_counter() - start
    return report


def adopt_typed_results(store: Store, target: Target, settings: MeasureSettings) -> None:
    """Move results stored under the options as typed (before the target gave its spelling of them)
    to the key results now carry, so that they resume instead of being measured again."""
    typed, key = settings.typed_key(target), settings.key(target)
    if typed != key and (moved := store.rekey(target.name, typed, key, settings.identity(target))):
        log.info("%s: %d stored result(s) keyed by the options as typed now carry key %s", target.name, moved, key)


def _machine() -> str:
    """This machine as it booted (containers on one kernel share it), else its host name."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


def _started(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), to tell it from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process(pid: int) -> str:
    return f"{_machine()}:{pid}:{_started(pid)}"


def _alive(process: str) -> bool | None:
    """Whether a marked process still runs; None for another machine's (or an unreadable mark)."""
    try:
        machine, pid_text, started = process.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if machine != _machine():
        return None
    if started:  # the same pid started anew is another process: this one is gone
        return _started(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _release_at_exit(path: Path, target: str, settings_key: str, process: str) -> None:
    """:func:`~accelnas.core.store.release_marks` on a connection of its own (the watchdog's thread)."""
    with contextlib.closing(sqlite3.connect(path, timeout=5.0)) as conn, conn:
        release_marks(conn, target, settings_key, process)
