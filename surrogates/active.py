"""Choosing which architectures to measure: space-filling designs and ensemble disagreement.

A device's surrogate gets good faster when the measured architectures cover the space (a
farthest-point design) and when later measurements go where a seed ensemble fitted on the earlier
ones disagrees most. :func:`active_rounds` is that loop, with a callback that measures each round;
:func:`active_campaign` runs it as campaigns and records each round in the store before measuring
it, so a rerun replays the recorded rounds (a killed or failed campaign resumes with the same
architectures) and a larger ``num`` continues the same design.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from accelnas.core.campaign import CampaignReport, Progress, adopt_typed_results, run_campaign
from accelnas.core.errors import AccelnasError
from accelnas.core.executors import Executor
from accelnas.core.plugins import PluginRegistry
from accelnas.core.records import MeasureSettings, Target
from accelnas.core.retry import RetryPolicy
from accelnas.core.space import Architecture, sample, unique
from accelnas.core.store import Store
from accelnas.surrogates.features import encode
from accelnas.surrogates.models import SeedEnsemble, make

log = logging.getLogger(__name__)


def space_filling(
    pool: Sequence[Architecture],
    n: int,
    *,
    seed: int = 0,
    chosen: Sequence[Architecture] = (),
    encoding: str = "onehot",
) -> list[Architecture]:
    """Greedy farthest-point selection of ``n`` architectures from ``pool`` (after ``chosen``).

    Each architecture is returned once, and none of ``chosen``: fewer than ``n`` come back when the
    pool holds fewer new ones.
    """
    pool = unique(pool)
    if not pool or n <= 0:
        return []
    X = encode(pool, encoding)
    picked: list[int] = []
    if chosen:
        dist = np.full(len(pool), np.inf)
        for row in encode(list(chosen), encoding):
            dist = np.minimum(dist, ((X - row) ** 2).sum(1))
    else:
        first = int(np.random.default_rng(seed).integers(len(pool)))
        picked.append(first)
        dist = ((X - X[first]) ** 2).sum(1)
    while len(picked) < n:
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:  # every architecture left is already picked or chosen
            break
        picked.append(nxt)
        dist = np.minimum(dist, ((X - X[nxt]) ** 2).sum(1))
    return [pool[i] for i in picked[:n]]


def most_uncertain(
    ensemble: SeedEnsemble, pool: Sequence[Architecture], n: int, exclude: set[str] | None = None
) -> list[Architecture]:
    """The ``n`` architectures of ``pool`` with the largest relative ensemble spread (none for ``n <= 0``)."""
    candidates = [a for a in pool if a.id not in (exclude or set())]
    if n <= 0 or not candidates:
        return []
    mean, std = ensemble.predict_dist(candidates)
    order = np.argsort(-(std / np.maximum(np.abs(mean), 1e-12)), kind="stable")
    return [candidates[i] for i in order[:n]]


def disagreement_ensemble(seed: int = 0) -> SeedEnsemble:
    """The ensemble used to find disagreement: XGBoost on raw features with row/column subsampling."""
    base = make("xgboost", seed=seed, n_estimators=300, max_depth=4, learning_rate=0.05, subsample=0.7,
                colsample_bytree=0.7, transform="log")  # fmt: skip
    return SeedEnsemble(base, n_members=5)


def select(strategy: str, num: int, *, seed: int = 0, pool_size: int = 5000) -> list[Architecture]:
    """Non-adaptive selections: ``random`` or ``space-filling`` (from a seeded random pool)."""
    if strategy == "random":
        return sample(num, seed)
    if strategy == "space-filling":
        return space_filling(sample(max(pool_size, num), seed), num, seed=seed)
    raise ValueError(f"unknown selection {strategy!r}")


Observations = Sequence[tuple[Architecture, float]]
"""(architecture, value) pairs an ensemble is fitted on."""


def round_sizes(num: int, initial: int | None = None, batch: int | None = None) -> tuple[int, int]:
    """(first round, later rounds) sizes: by default a quarter of ``num`` (at least 8), then a tenth
    (at least 4). Refuses counts below 1 with a :class:`ValueError`."""
    for name, value in (("num", num), ("initial", initial), ("batch", batch)):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
            raise ValueError(f"active selection needs {name} to be a whole number >= 1, got {value!r}")
    return (max(8, num // 4) if initial is None else int(initial)), (max(4, num // 10) if batch is None else int(batch))


def active_rounds(
    pool: Sequence[Architecture],
    num: int,
    measure: Callable[[int, list[Architecture]], Observations | None],
    *,
    initial: int | None = None,
    batch: int | None = None,
    seed: int = 0,
    replay: Sequence[Sequence[Architecture]] = (),
) -> list[Architecture]:
    """Choose ``num`` architectures of ``pool`` in rounds and have ``measure`` measure each round.

    Round 0 is a space-filling design of ``initial`` architectures; each later round holds the
    ``batch`` architectures (not yet chosen or observed) on which :func:`disagreement_ensemble`,
    fitted on every observation, disagrees most. ``measure(index, archs)`` measures one round and
    returns every (architecture, value) observed so far, or None to stop. The rounds of ``replay``
    (chosen before, in order) are taken as they are, cut at ``num``, before new ones are chosen.
    Returns the chosen architectures in order.
    """
    initial, batch = round_sizes(num, initial, batch)
    chosen: list[Architecture] = []
    ids: set[str] = set()
    observed: Observations = []
    index = 0
    while len(chosen) < num:
        want = num - len(chosen)
        if index < len(replay):
            nxt = unique(a for a in replay[index] if a.id not in ids)[:want]
        elif index == 0:
            nxt = space_filling(pool, min(initial, want), seed=seed)
        elif len(observed) < 4:
            log.warning("too few successful measurements to fit an ensemble; continuing space-filling")
            nxt = space_filling(pool, min(batch, want), chosen=chosen + [a for a, _ in observed])
        else:
            ensemble = disagreement_ensemble(seed).fit([a for a, _ in observed], [v for _, v in observed])
            nxt = most_uncertain(ensemble, pool, min(batch, want), ids | {a.id for a, _ in observed})
        if not nxt and index >= len(replay):  # a pool of at least num distinct architectures never runs out
            raise AccelnasError(f"active selection ran out of candidates after {len(chosen)} architectures")
        index += 1
        if not nxt:  # a recorded round whose architectures were all chosen before
            continue
        chosen += nxt
        ids.update(a.id for a in nxt)
        result = measure(index - 1, nxt)
        if result is None:
            break
        observed = list(result)
    return chosen


def active_campaign(
    registry: PluginRegistry,
    target: Target,
    settings: MeasureSettings,
    store: Store,
    *,
    num: int,
    metric: str | None = None,
    initial: int | None = None,
    batch: int | None = None,
    seed: int = 0,
    pool_size: int = 5000,
    progress: Callable[[Progress], None] | None = None,
    metrics: Sequence[str] | None = None,
    executor: Executor | None = None,
    retry: RetryPolicy | Mapping[str, RetryPolicy] | None = None,
    retry_failed: bool = True,
    time_budget: float | None = None,
    max_failures: int | None = None,
) -> list[CampaignReport]:
    """Measure ``num`` architectures in rounds: a space-filling start, then the most disputed ones.

    Disagreement is judged on ``metric`` (default: the first of ``metrics``, else the target's
    first), by an ensemble fitted on the successful measurements of that metric, of this target and
    settings, of the architectures the design has chosen so far (not other campaigns' results in
    the store, so that a store whose rounds were not recorded re-derives the same ones). Each round's
    architectures are recorded in the store before they are measured, and a later run with the
    same target, settings, metric and seed replays the recorded rounds (cut at ``num``) before
    choosing new ones: a killed or failed campaign resumes with the same rounds, and a larger
    ``num`` continues the design. ``metrics``, ``executor``, ``retry``
    and ``retry_failed`` apply to every round as in :func:`~accelnas.core.campaign.run_campaign`,
    and ``time_budget`` (seconds) and ``max_failures`` cover all rounds: once spent or reached, no
    further round starts and the last report says what is pending.
    """
    try:
        initial, batch = round_sizes(num, initial, batch)
    except ValueError as exc:
        raise AccelnasError(str(exc)) from None
    metric = metric or (metrics[0] if metrics else target.metrics[0])
    if metrics and metric not in metrics:
        raise AccelnasError(f"active selection judges {metric!r}, which is not among the measured metrics")
    if time_budget is not None and not 0 < time_budget < float("inf"):
        raise AccelnasError(f"the time budget must be a positive number of seconds, got {time_budget}")
    pool = sample(max(pool_size, num), seed)  # never fewer candidates than architectures asked for
    deadline = time.monotonic() + time_budget if time_budget is not None else float("inf")
    key = settings.key(target)
    adopt_typed_results(store, target, settings)  # before the rounds are read: they move with the results
    replay = store.recorded_rounds(target.name, key, metric, seed)
    if replay:
        log.info("replaying %d recorded rounds (%d architectures)", len(replay), sum(map(len, replay)))
    reports: list[CampaignReport] = []
    done = 0  # architectures handed to earlier rounds: progress counts over the whole campaign
    designed: set[str] = set()  # ids of the architectures the rounds have chosen so far

    def stopped() -> bool:
        last = reports[-1]
        if max_failures is not None and sum(r.failed - r.crashed for r in reports) >= max_failures:
            last.failure_limit_reached = True  # also when the round's last outcome reached the limit
        return last.budget_exhausted or last.failure_limit_reached or last.unavailable is not None

    def measure(index: int, archs: list[Architecture]) -> Observations | None:
        nonlocal done
        store.record_round(target.name, key, metric, seed, index, archs)
        designed.update(a.id for a in archs)
        left = deadline - time.monotonic()
        failures_left = (
            None if max_failures is None else max(1, max_failures - sum(r.failed - r.crashed for r in reports))
        )
        offset, done = done, done + len(archs)
        counted = (lambda e: progress(dataclasses.replace(e, index=offset + e.index, total=num))) if progress else None
        reports.append(run_campaign(
            registry, target, archs, settings, store, metrics=metrics, retry_failed=retry_failed,
            progress=counted, executor=executor, retry=retry,
            time_budget=None if left == float("inf") else max(left, 1e-3), max_failures=failures_left,
        ))  # fmt: skip
        if stopped():
            return None
        if time.monotonic() >= deadline:
            reports[-1].budget_exhausted = True
            return None
        return [
            (Architecture.from_config(r["config"]), r["value"])
            for r in store.results(target=target.name)
            if r["metric"] == metric and r["settings_key"] == key and r["arch_id"] in designed
        ]

    chosen = active_rounds(pool, num, measure, initial=initial, batch=batch, seed=seed, replay=replay)
    if reports and stopped():  # measurements, like run_campaign's: architectures not chosen × metrics
        reports[-1].pending += (num - len(chosen)) * len(set(metrics or target.metrics))
    return reports
