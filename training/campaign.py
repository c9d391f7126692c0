"""Accuracy campaigns: train architectures under a recipe and commit each result to the campaign store.

A training result is stored like a hardware measurement: target ``train/<dataset>``, metric
``accuracy`` (top-1, %), and a settings key hashing the recipe's identity together with the data's
and the trainer's revision,
so re-running a campaign skips what is stored and a failed run is retried. ``extra`` holds top-5,
wall time, device-hours, the device and the per-epoch history; the rows export through
:func:`accelnas.core.dataset.from_store` into the same dataset/surrogate path as throughput.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from accelnas.core.errors import AccelnasError
from accelnas.core.provenance import host_provenance
from accelnas.core.records import Measurement
from accelnas.core.space import Architecture, unique
from accelnas.core.store import Store
from accelnas.training.data import DataSplits
from accelnas.training.distributed import DistContext, broadcast
from accelnas.training.recipe import Recipe
from accelnas.training.trainer import TrainingError, TrainResult, process_cpu_seconds, train

log = logging.getLogger(__name__)

METRIC = "accuracy"
UNIT = "%"
PLUGIN = "accelnas.training"


def accuracy_target(data: DataSplits | str) -> str:
    """The store target of accuracies on a dataset: ``train/<dataset>``."""
    name = data if isinstance(data, str) else data.name
    return f"train/{name}"


# Raised with every change to the trainer that alters what a recipe produces (optimizer, initialisation,
# augmentation, loss): a stored result of another revision keeps its own key, so it is neither
# resumed nor mixed with results of this code. 2: TensorFlow's RMSprop, torchvision's classifier
# initialisation, aspect-preserving crops and per-rank crop seeds. 3: a last batch of a single image is
# left out of training and of the BatchNorm recalibration, whose statistics ranks average weighed by
# the images each used.
TRAINER_REVISION = 3


def settings_for(recipe: Recipe, data: DataSplits) -> tuple[str, dict[str, Any]]:
    """(settings key, settings) of training under ``recipe`` on ``data`` with this trainer revision."""
    settings = {
        "recipe": recipe.identity(),
        "recipe_name": recipe.name,
        "data": data.identity(),
        "trainer_revision": TRAINER_REVISION,
    }
    identity = {"recipe": recipe.identity(), "data": data.identity(), "trainer_revision": TRAINER_REVISION}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return key, settings


@dataclass
class Evaluation:
    """One architecture's accuracy under one recipe and what it cost.

    A run that failed (diverged, crashed) has ``failed`` set, NaN accuracies, and the time it took
    before failing (that rank's wall and CPU seconds), which a search still paid for.
    """

    arch_id: str
    top1: float
    top5: float
    wall_seconds: float
    device_hours: float
    cached: bool = False
    cpu_seconds: float = float("nan")
    failed: bool = False


def to_measurement(result: TrainResult, recipe: Recipe) -> Measurement:
    """The store record of a training result (metric ``accuracy``, top-1 in %)."""
    extra = {
        "top5": result.top5,
        "val_loss": result.val_loss,
        "wall_seconds": result.wall_seconds,
        "cpu_seconds": result.cpu_seconds,
        "train_seconds": result.train_seconds,
        "device_hours": result.device_hours,
        "devices": result.devices,
        "device": result.device,
        "epochs": result.epochs,
        "images_seen": result.images_seen,
        "final_train_loss": result.final_train_loss,
        "ema": result.ema,
        "recipe_name": recipe.name,
        "history": result.history,
    }
    return Measurement(
        metric=METRIC, unit=UNIT, mean=result.top1, std=0.0, ci_low=result.top1, ci_high=result.top1,
        samples=[result.top1], batch_size=recipe.batch_size, input_size=recipe.final_eval_resolution,
        precision_reached=True, extra=extra, provenance=host_provenance(),
    )  # fmt: skip


def _number(extra: dict[str, Any], key: str) -> float:
    """A number of a stored result's ``extra``: NaN where missing or stored as null (undefined)."""
    value = extra.get(key)
    return math.nan if value is None else float(value)


def stored_evaluations(store: Store, target: str, settings_key: str) -> dict[str, Evaluation]:
    """The ``ok`` accuracy rows of one target and settings key, by architecture id."""
    out = {}
    for row in store.results(target=target, status="ok"):
        if row["settings_key"] != settings_key or row["metric"] != METRIC:
            continue
        extra = row.get("extra") or {}
        top5, wall, hours, cpu = (_number(extra, k) for k in ("top5", "wall_seconds", "device_hours", "cpu_seconds"))
        out[row["arch_id"]] = Evaluation(row["arch_id"], float(row["value"]), top5, wall, hours, cached=True,
                                         cpu_seconds=cpu)  # fmt: skip
    return out


@dataclass
class AccuracyReport:
    target: str
    settings_key: str
    planned: int
    trained: int = 0
    already_done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    failures: dict[str, Evaluation] = field(default_factory=dict)  # what each run that failed here cost
    failures_kept: int = 0  # stored failures not trained again (retry_failed=False)

    def tally(self) -> str:
        """'N trained (H device-hours), M already stored, K failed' (and the stored failures not retried)."""
        hours = sum(e.device_hours for e in self.evaluations.values() if not e.cached)  # this run's trainings
        kept = f", {self.failures_kept} stored failure(s) not retried" if self.failures_kept else ""
        return (f"{self.trained} trained ({hours:.4f} device-hours), {self.already_done} already stored, "
                f"{self.failed} failed{kept}")  # fmt: skip


def run_accuracy_campaign(
    archs: Sequence[Architecture],
    recipe: Recipe,
    data: DataSplits,
    store: Store | None,
    *,
    ctx: DistContext | None = None,
    retry_failed: bool = True,
    workers: int = 0,
    progress: Callable[[int, int, Architecture, str, Evaluation | None, str | None], None] | None = None,
) -> AccuracyReport:
    """Train each of ``archs`` under ``recipe`` unless stored; commit every result as it arrives.

    Under DDP every rank trains (each on its shard); rank 0 alone reads and writes the store
    (``store`` may be None on the other ranks) and tells the others what is left to do.
    """
    ctx = ctx or DistContext()
    archs = unique(archs)  # an architecture named twice is trained once
    target = accuracy_target(data)
    key, settings = settings_for(recipe, data)
    report = AccuracyReport(target=target, settings_key=key, planned=len(archs))
    start = time.perf_counter()
    done: dict[str, Evaluation] = {}
    state: dict[tuple[str, str], str] = {}
    if ctx.is_main:
        if store is None:
            raise AccelnasError("rank 0 needs a campaign store")
        done = stored_evaluations(store, target, key)
        state = store.status_of(target, key)
    todo_ids = broadcast(
        [a.id for a in archs if a.id not in done and (retry_failed or state.get((a.id, METRIC)) != "failed")], ctx
    )
    emit = progress or (lambda *args: None)
    show_epoch = getattr(progress, "epoch", None)  # per-epoch progress, where the callback shows it
    for index, arch in enumerate(archs, 1):
        if arch.id in done:
            report.already_done += 1
            report.evaluations[arch.id] = done[arch.id]
            emit(index, len(archs), arch, "skipped", done[arch.id], None)
            continue
        if arch.id not in todo_ids:
            if state.get((arch.id, METRIC)) == "failed":  # known on rank 0, which reports
                report.failures_kept += 1
                emit(index, len(archs), arch, "kept-failure", None, None)
            continue
        began, cpu_began = time.perf_counter(), process_cpu_seconds()
        on_epoch = functools.partial(show_epoch, arch, recipe.epochs) if show_epoch else None
        try:
            result = train(arch, recipe, data, ctx=ctx, workers=workers, on_epoch=on_epoch)
        except (AccelnasError, RuntimeError, ValueError) as exc:  # a diverged or crashed run: keep going
            if ctx.distributed and not isinstance(exc, TrainingError):
                # only a divergence is agreed by every rank; after another error (one rank's unreadable
                # image, its lost peer) the ranks are out of step, and going on would hang them
                raise
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, AccelnasError) else str(exc)
            wall = time.perf_counter() - began
            report.failures[arch.id] = Evaluation(
                arch.id, math.nan, math.nan, wall, wall * ctx.world_size / 3600.0,
                cpu_seconds=process_cpu_seconds() - cpu_began, failed=True,
            )  # fmt: skip
            report.failed += 1
            report.errors.append(f"{arch.id}: {error}")
            if ctx.is_main and store is not None:
                store.record_failure(arch, target, METRIC, key, settings, error, PLUGIN)
            emit(index, len(archs), arch, "failed", None, error)
            continue
        evaluation = Evaluation(
            arch.id, result.top1, result.top5, result.wall_seconds, result.device_hours, cpu_seconds=result.cpu_seconds
        )
        if ctx.is_main and store is not None:
            store.record_ok(arch, target, key, settings, to_measurement(result, recipe), PLUGIN)
        report.trained += 1
        report.evaluations[arch.id] = evaluation
        emit(index, len(archs), arch, "ok", evaluation, None)
    report.seconds = time.perf_counter() - start
    return report


class ProgressLines:
    """Progress callback for :func:`run_accuracy_campaign` writing one line per architecture, and one per
    epoch where an architecture's training has gone ``every`` seconds without a line."""

    def __init__(self, echo: Callable[[str], None], label: str = "", every: float = 30.0) -> None:
        self.echo = echo
        self.label = f"{label} " if label else ""
        self.start = time.perf_counter()
        self.worked = 0
        self.handled = 0  # architectures reported so far (Ray reports them in the order they finish)
        self.every = every
        self.last = self.start  # when the last line was written

    def epoch(self, arch: Architecture, epochs: int, row: dict[str, float]) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self.echo(f"{self.label}  {arch.id}  epoch {int(row['epoch'])}/{epochs}  loss {row['train_loss']:.4f}  "
                      f"{row['seconds']:.0f}s")  # fmt: skip

    def __call__(self, index: int, total: int, arch: Architecture, status: str, ev: Evaluation | None,
                 error: str | None) -> None:  # fmt: skip
        head = f"{self.label}[{index:>{len(str(total))}}/{total}] {arch.id}"
        self.last = time.perf_counter()
        self.handled += 1
        if status == "skipped":
            self.echo(f"{head}  already stored: top-1 {ev.top1:.2f}%" if ev else f"{head}  already stored")
            return
        if status == "kept-failure":
            self.echo(f"{head}  failed before; not trained again (--no-retry-failed)")
            return
        self.worked += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.worked * (total - self.handled)
        if status == "ok" and ev is not None:
            self.echo(
                f"{head}  top-1 {ev.top1:6.2f}%  top-5 {ev.top5:6.2f}%  {ev.wall_seconds:6.1f}s  [eta {eta:.0f}s]"
            )
        else:
            self.echo(f"{head}  FAILED: {error}")
