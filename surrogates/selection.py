"""Choosing a surrogate on a validation split: among families, and hyperparameters with Optuna."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accelnas.core.errors import DatasetError
from accelnas.core.space import Architecture
from accelnas.surrogates.metrics import regression_metrics
from accelnas.surrogates.models import make

log = logging.getLogger(__name__)

MIN_SELECTION_ROWS = 4  # two folds of two training rows each: fewer leave a fold a single row to fit
# (family, parameters) tried by default; ordered from cheapest to fit
DEFAULT_CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("additive", {"transform": "none", "encoding": "analytic"}),
    ("additive", {"transform": "log", "encoding": "analytic"}),
    ("additive", {"transform": "none"}),
    ("additive", {"transform": "log"}),
    ("additive", {"transform": "none", "encoding": "additive-compact"}),
    ("additive", {"transform": "inverse", "encoding": "additive-compact"}),
    ("hybrid", {"transform": "none"}),
    ("hybrid", {"transform": "log"}),
    ("hybrid", {"transform": "inverse"}),
    ("xgboost", {"transform": "log", "encoding": "raw+products"}),
    ("lightgbm", {"transform": "log", "encoding": "onehot"}),
)


@dataclass
class Selection:
    family: str
    params: dict[str, Any]
    validation: dict[str, float]
    scores: list[dict[str, Any]] = field(default_factory=list)  # every candidate's validation metrics


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) index arrays of a seeded random split."""
    if n < 4:
        raise ValueError(f"a split needs at least 4 rows, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    held = held_out(n, fraction)
    return order[held:], order[:held]


def held_out(n: int, fraction: float) -> int:
    """How many of ``n`` rows :func:`split` holds out: ``fraction`` of them, at least two on each side."""
    return min(max(2, round(fraction * n)), n - 2)


def check_selectable(n_train: int) -> None:
    """A :class:`DatasetError` unless ``n_train`` training architectures are enough to choose a family."""
    if n_train < MIN_SELECTION_ROWS:
        raise DatasetError(
            f"choosing a surrogate family needs at least {MIN_SELECTION_ROWS} training architectures, got "
            f"{n_train}: hold out fewer (test fraction) or name a family"
        )


def _score(m: dict[str, float]) -> tuple[float, float]:
    """Sort key of validation metrics: τ, then R²; undefined values (constant predictions) rank last."""
    return tuple(v if np.isfinite(v) else -np.inf for v in (m["kendall_tau"], m["r2"]))  # type: ignore[return-value]


def folds(n: int, seed: int, val_fraction: float = 0.2, cv_below: int = 1000) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validation folds: k-fold cross-validation (k ≤ 5) for small data, one split for large data."""
    if n >= cv_below:
        return [split(n, val_fraction, seed)]
    k = max(2, min(5, n // 4))
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), parts[i]) for i in range(k)]


def select_family(
    archs: Sequence[Architecture],
    y: Sequence[float],
    *,
    candidates: Sequence[tuple[str, dict[str, Any]]] = DEFAULT_CANDIDATES,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Selection:
    """Keep the candidate with the best validation Kendall τ (then R²).

    Small datasets (under 1000 architectures) are scored by k-fold cross-validation, pooling the
    out-of-fold predictions, so that the choice does not hinge on a handful of architectures. A
    candidate that predicts one value for a whole fold ranks last. Fewer than
    :data:`MIN_SELECTION_ROWS` architectures are a :class:`DatasetError`.
    """
    y = np.asarray(y, dtype=float)
    check_selectable(len(archs))
    splits = folds(len(archs), seed, val_fraction)
    best: tuple[tuple[float, float], str, dict[str, Any], dict[str, float]] | None = None
    scores = []
    for family, params in candidates:
        start = time.perf_counter()
        truth, pred = [], []
        for train, val in splits:
            model = make(family, seed=seed, **params).fit([archs[i] for i in train], y[train])
            truth.append(y[val])
            pred.append(model.predict([archs[i] for i in val]))
        metrics = regression_metrics(np.concatenate(truth), np.concatenate(pred))
        # one value for a whole fold (a tree family that cannot split so few rows) learned nothing; pooled
        # over folds, the fold means alone can still rank well, so such a candidate ranks last
        flat = any(len(p) > 1 and np.ptp(p) == 0 for p in pred)
        scores.append({"family": family, "params": params, **metrics, "fit_seconds": time.perf_counter() - start,
                       "constant_predictions": flat})  # fmt: skip
        log.info("candidate %s %s: tau=%.4f r2=%.4f", family, params, metrics["kendall_tau"], metrics["r2"])
        score = (-np.inf, -np.inf) if flat else _score(metrics)
        if best is None or score > best[0]:
            best = (score, family, params, metrics)
    if best is None:
        raise ValueError("family selection needs at least one candidate")
    return Selection(best[1], dict(best[2]), best[3], scores)


def tune(
    family: str,
    archs: Sequence[Architecture],
    y: Sequence[float],
    *,
    space: dict[str, tuple[str, Any, Any]],
    fixed: dict[str, Any] | None = None,
    budget_seconds: float = 60.0,
    max_trials: int = 100,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Selection:
    """Optuna TPE search of ``space`` ({name: ("int"|"float"|"logfloat", low, high)}) within a time budget.

    The budget bounds when fits start, not how long one runs: a trial is fitted only where the time
    left covers its estimated cost (the slowest completed trial's seconds per unit of size, its size
    the product of ``n_estimators``, ``max_depth``, ``log2(num_leaves)`` and ``max_features`` where
    the trial sets them), and none starts after the deadline. The first trial, at the smallest
    ``n_estimators`` of the space, always runs. So the search overruns the budget only where that
    first trial alone does, or by how much one trial's cost was underestimated.
    """
    import optuna

    if not np.isfinite(budget_seconds) or budget_seconds <= 0:
        raise ValueError(f"budget_seconds must be a positive number of seconds, got {budget_seconds!r}")
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {max_trials!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.monotonic() + budget_seconds
    y = np.asarray(y, dtype=float)
    inner, val = split(len(archs), val_fraction, seed)
    train_archs, val_archs = [archs[i] for i in inner], [archs[i] for i in val]
    fixed = dict(fixed or {})
    scores: list[dict[str, Any]] = []
    rates: list[float] = []  # seconds per unit of trial size, of the completed trials
    cheapest = _trial_size(fixed | {name: low for name, (_, low, _) in space.items()})

    def objective(trial: optuna.Trial) -> float:
        params = dict(fixed)
        for name, (kind, low, high) in space.items():
            if kind == "int":
                params[name] = trial.suggest_int(name, low, high)
            else:
                params[name] = trial.suggest_float(name, low, high, log=kind == "logfloat")
        size, left = _trial_size(params), deadline - time.monotonic()
        if rates and max(rates) * size > left:
            if max(rates) * cheapest > left:  # not even the smallest trial would end in time
                trial.study.stop()
            raise optuna.TrialPruned("would not end within the budget")
        start = time.monotonic()
        model = make(family, seed=seed, **params).fit(train_archs, y[inner])
        metrics = regression_metrics(y[val], model.predict(val_archs))
        rates.append((time.monotonic() - start) / size)
        scores.append({"family": family, "params": params, **metrics})
        tau, r2 = _score(metrics)
        return tau + 1e-3 * r2 if np.isfinite(tau + r2) else -1e9

    def stop_at_deadline(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if time.monotonic() >= deadline:
            study.stop()

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    if "n_estimators" in space:
        study.enqueue_trial({"n_estimators": space["n_estimators"][1]})  # the cheapest first: it always runs
    study.optimize(objective, n_trials=max_trials, callbacks=[stop_at_deadline])
    best = max(scores, key=_score)
    metrics = {k: v for k, v in best.items() if k not in ("family", "params")}
    spent = budget_seconds - (deadline - time.monotonic())
    log.info("tuned %s: %d trials fitted (%d skipped as too slow) in %.1f s", family, len(scores),
             len(study.trials) - len(scores), spent)  # fmt: skip
    return Selection(family, best["params"], metrics, scores)


def _trial_size(params: dict[str, Any]) -> float:
    """A trial's fitting cost up to a factor: trees times their depth (and the share of features tried)."""
    size = float(params.get("n_estimators", 1))
    size *= float(params.get("max_depth") or 1)
    size *= max(1.0, float(np.log2(params.get("num_leaves", 2))))
    if isinstance(params.get("max_features"), float):
        size *= params["max_features"]
    return max(size, 1e-9)


# Search spaces for :func:`tune`: {parameter: (kind, low, high)}
SPACES: dict[str, dict[str, tuple[str, Any, Any]]] = {
    "xgboost": {"n_estimators": ("int", 200, 3000), "max_depth": ("int", 2, 8),
                "learning_rate": ("logfloat", 0.01, 0.2), "subsample": ("float", 0.5, 1.0),
                "colsample_bytree": ("float", 0.3, 1.0)},
    "lightgbm": {"n_estimators": ("int", 200, 3000), "num_leaves": ("int", 4, 64),
                 "learning_rate": ("logfloat", 0.01, 0.2), "subsample": ("float", 0.5, 1.0),
                 "colsample_bytree": ("float", 0.3, 1.0)},
    "hybrid": {"n_estimators": ("int", 300, 3000), "max_depth": ("int", 2, 6),
               "learning_rate": ("logfloat", 0.01, 0.2), "subsample": ("float", 0.5, 1.0),
               "colsample_bytree": ("float", 0.3, 1.0)},
    "random_forest": {"n_estimators": ("int", 100, 600), "max_features": ("float", 0.2, 1.0),
                      "min_samples_leaf": ("int", 1, 8)},
    "svr": {"C": ("logfloat", 0.1, 1000.0), "epsilon": ("logfloat", 1e-4, 0.1)},
}  # fmt: skip
