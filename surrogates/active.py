"""Choosing which architectures to measure: space-filling designs and ensemble disagreement.

A device's surrogate gets good faster when the measured architectures cover the space (a
farthest-point design) and when later measurements go where a seed ensemble fitted on the earlier
ones disagrees most. :func:`active_campaign` runs a campaign in such rounds; every round is a normal
campaign, so a killed active campaign resumes like any other (the rounds are re-derived from the
stored results, deterministically).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from accelnas.core.campaign import CampaignReport, Progress, run_campaign
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
    """The ``n`` architectures of ``pool`` with the largest relative ensemble spread."""
    candidates = [a for a in pool if a.id not in (exclude or set())]
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
    first); ``metrics``, ``executor``, ``retry`` and ``retry_failed`` apply to every round as in
    :func:`~accelnas.core.campaign.run_campaign`, and ``time_budget`` (seconds) and ``max_failures``
    cover all rounds: once spent or reached, no further round starts and the last report says what is
    pending.
    """
    metric = metric or (metrics[0] if metrics else target.metrics[0])
    if metrics and metric not in metrics:
        raise AccelnasError(f"active selection judges {metric!r}, which is not among the measured metrics")
    if time_budget is not None and not 0 < time_budget < float("inf"):
        raise AccelnasError(f"the time budget must be a positive number of seconds, got {time_budget}")
    initial = initial or max(8, num // 4)
    batch = batch or max(4, num // 10)
    pool = sample(max(pool_size, num), seed)  # never fewer candidates than architectures asked for
    deadline = time.monotonic() + time_budget if time_budget is not None else float("inf")

    def round_of(archs: list[Architecture]) -> CampaignReport:
        left = deadline - time.monotonic()
        failures_left = None if max_failures is None else max(1, max_failures - sum(r.failed for r in reports))
        offset = len(chosen) - len(archs)  # progress counts over the whole campaign, not the round
        counted = (lambda e: progress(dataclasses.replace(e, index=offset + e.index, total=num))) if progress else None
        return run_campaign(
            registry, target, archs, settings, store, metrics=metrics, retry_failed=retry_failed,
            progress=counted, executor=executor, retry=retry,
            time_budget=None if left == float("inf") else max(left, 1e-3), max_failures=failures_left,
        )  # fmt: skip

    def stopped() -> bool:
        last = reports[-1]
        if max_failures is not None and sum(r.failed for r in reports) >= max_failures:
            last.failure_limit_reached = True  # also when the round's last outcome reached the limit
        return last.budget_exhausted or last.failure_limit_reached

    chosen = space_filling(pool, min(initial, num), seed=seed)
    reports: list[CampaignReport] = []
    reports.append(round_of(chosen))
    key = settings.key(target)
    while len(chosen) < num and not stopped():
        if time.monotonic() >= deadline:
            reports[-1].budget_exhausted = True
            break
        values = {
            r["arch_id"]: r["value"] for r in store.results(target=target.name) if r["metric"] == metric
            and r["settings_key"] == key
        }  # fmt: skip
        known = [a for a in chosen if a.id in values]
        if len(known) < 4:
            log.warning("too few successful %s measurements to fit an ensemble; continuing space-filling", metric)
            nxt = space_filling(pool, min(batch, num - len(chosen)), chosen=chosen)
        else:
            ensemble = disagreement_ensemble(seed).fit(known, [values[a.id] for a in known])
            nxt = most_uncertain(ensemble, pool, min(batch, num - len(chosen)), {a.id for a in chosen})
        if not nxt:  # cannot happen with a pool of at least num distinct architectures; never loop on it
            raise AccelnasError(f"active selection ran out of candidates after {len(chosen)} architectures")
        chosen += nxt
        reports.append(round_of(nxt))
    if stopped():  # measurements, like run_campaign's: architectures not chosen × metrics
        reports[-1].pending += (num - len(chosen)) * len(set(metrics or target.metrics))
    return reports
