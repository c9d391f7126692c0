"""Fit a surrogate for one (target, metric) of a dataset: choose, evaluate on held-out architectures, refit."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from accelnas.core.dataset import select, validate
from accelnas.core.errors import DatasetError
from accelnas.core.records import is_whole
from accelnas.core.space import FEATURE_NAMES, Architecture
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.drift import DRIFTS, DriftCorrection
from accelnas.surrogates.drift import estimate as drift_estimate
from accelnas.surrogates.drift import resolve as resolve_drift
from accelnas.surrogates.metrics import regression_metrics
from accelnas.surrogates.models import SeedEnsemble, Surrogate, make
from accelnas.surrogates.selection import DEFAULT_CANDIDATES, Selection, select_family, split


@dataclass
class FitResult:
    artifact: SurrogateArtifact
    test_true: np.ndarray
    test_pred: np.ndarray
    test_ids: list[str]
    selection: Selection | None = None
    drift: DriftCorrection | None = None  # the saved model's, where drift was corrected


def dataset_hash(part: pd.DataFrame) -> str:
    text = "\n".join(f"{a},{v!r}" for a, v in sorted(zip(part["arch_id"], part["value"], strict=True)))
    return hashlib.sha256(text.encode()).hexdigest()


def architectures(part: pd.DataFrame) -> list[Architecture]:
    return [Architecture.from_config(row) for row in part[list(FEATURE_NAMES)].to_dict("records")]


WEIGHTINGS = ("none", "noise")


def noise_weights(y: np.ndarray, std: np.ndarray, transform: str, floor: float = 1.0) -> np.ndarray | None:
    """Inverse-variance weights from measurement standard deviations, in the model's target space.

    A measurement's noise maps to ``std`` (no transform), ``std/y`` (log) or ``std/y²`` (1/y). The
    weight is ``1 / (noise² + f²)`` with ``f`` at ``floor`` times the median noise: with the default
    1, precise measurements count up to twice as much as a typical one (with 0.5 up to five times)
    while noisy ones count less; rows without a std get the weight of a median-noise row. ``None``
    where no row has a std.
    """
    if floor <= 0:
        raise ValueError(f"the noise floor must be positive, got {floor!r}")
    std = np.asarray(std, dtype=np.float64)
    finite = np.isfinite(std) & (std >= 0)
    if not finite.any():
        return None
    y = np.asarray(y, dtype=np.float64)
    scale = {"none": 1.0, "log": 1.0 / np.abs(y), "inverse": 1.0 / y**2}[transform]
    noise = np.where(finite, std, np.nan) * scale
    typical = float(np.nanmedian(noise))
    if typical <= 0:
        return None
    noise = np.where(np.isnan(noise), typical, noise)
    return 1.0 / (noise**2 + (floor * typical) ** 2)


def _model(family: str, params: dict[str, Any], ensemble: int, seed: int) -> Surrogate | SeedEnsemble:
    base = make(family, seed=seed, **params)
    return SeedEnsemble(base, n_members=ensemble) if ensemble > 1 else base


class FittedModel(NamedTuple):
    """What :func:`fit_model` made: the model, the drift correction applied and whether rows were weighted."""

    model: Surrogate | SeedEnsemble
    correction: DriftCorrection | None
    weighted: bool


def fit_model(
    archs: list[Architecture],
    y: np.ndarray,
    *,
    family: str,
    params: dict[str, Any] | None = None,
    ensemble: int = 1,
    seed: int = 0,
    std: np.ndarray | None = None,
    weighting: str = "none",
    noise_floor: float = 1.0,
    sequence: np.ndarray | None = None,
    drift: str = "none",
) -> FittedModel:
    """Fit one model of a recipe: noise weights from ``std`` and, with ``drift="sequence"``, the
    session factors estimated from ``sequence`` divided out first (see :mod:`~accelnas.surrogates.drift`;
    ``"auto"`` does so where every row has a sequence and there are enough rows).

    Returns the model, the drift correction applied (``None`` without one) and whether the rows
    were weighted (no std usable, or most of them zero, leaves them unweighted).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    drift = resolve_drift(drift, sequence, len(y))
    params = dict(params or {})
    y = np.asarray(y, dtype=np.float64)
    std = None if weighting == "none" or std is None else np.asarray(std, dtype=np.float64)
    transform = params.get("transform", make(family).transform)

    def weights(values: np.ndarray, spreads: np.ndarray | None) -> np.ndarray | None:
        return None if spreads is None else noise_weights(values, spreads, transform, noise_floor)

    correction = None
    if drift == "sequence":

        def fit_predict(values: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
            spreads = None if std is None else std[train] * values[train] / y[train]
            model = _model(family, params, 1, seed).fit(
                [archs[i] for i in train], values[train], weights(values[train], spreads)
            )
            return model.predict([archs[i] for i in test])

        correction = drift_estimate(fit_predict, y, sequence, seed=seed)
        y = correction.apply(y)
        std = None if std is None else correction.apply(std)
    row_weights = weights(y, std)
    model = _model(family, params, ensemble, seed).fit(archs, y, row_weights)
    return FittedModel(model, correction, row_weights is not None)


def _rows(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


MIN_ARCHITECTURES = 8


def fittable(frame: pd.DataFrame, target: str, metric: str) -> pd.DataFrame:
    """The rows of (``target``, ``metric``) in ``frame``, validated (see :func:`~accelnas.core.dataset.validate`);
    a :class:`DatasetError` if they are malformed or too few to fit and test."""
    missing = [c for c in ("target", "metric") if c not in frame.columns]
    if missing:
        raise DatasetError(f"dataset: missing column {missing[0]!r}")
    part = validate(select(frame, target, metric), f"{target}:{metric} rows")
    if len(part) < MIN_ARCHITECTURES:
        raise DatasetError(
            f"{target}:{metric} has {len(part)} architectures; at least {MIN_ARCHITECTURES} are needed to fit and test"
        )
    return part


def fit_surrogate(
    frame: pd.DataFrame,
    target: str,
    metric: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    family: str = "auto",
    params: dict[str, Any] | None = None,
    ensemble: int = 1,
    refit_all: bool = False,
    candidates=DEFAULT_CANDIDATES,
    weighting: str = "none",
    noise_floor: float = 1.0,
    drift: str = "none",
) -> FitResult:
    """Fit on a seeded split of ``frame``'s rows for (target, metric) and report held-out metrics.

    ``family="auto"`` picks the best candidate on a validation split inside the training part.
    With ``refit_all`` the saved model is refitted on every row after the held-out evaluation.
    ``weighting="noise"`` weights rows by their measurement noise (the ``std`` column; see
    :func:`noise_weights`, which ``noise_floor`` is passed to). ``drift="sequence"`` divides out
    session factors estimated from the ``sequence`` column (see :mod:`~accelnas.surrogates.drift`);
    ``drift="auto"`` does so where every row has a sequence and there are enough rows, and fits
    without it otherwise. The held-out rows keep their measured values.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if drift not in DRIFTS:
        raise ValueError(f"drift must be one of {DRIFTS}, got {drift!r}")
    if not is_whole(ensemble) or ensemble < 1:
        raise ValueError(f"ensemble must be a whole number >= 1, got {ensemble!r}")
    if not is_whole(seed) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be a whole number within [0, 2**31), got {seed!r}")
    part = fittable(frame, target, metric)
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be within (0, 1)")
    archs = architectures(part)
    y = part["value"].to_numpy(dtype=float)
    train, test = split(len(part), test_fraction, seed)
    train_archs = [archs[i] for i in train]
    start = time.perf_counter()
    selection = None
    if family == "auto":
        selection = select_family(train_archs, y[train], candidates=candidates, seed=seed)
        family, params = selection.family, selection.params
    std = part["std"].to_numpy(dtype=float) if weighting == "noise" and "std" in part.columns else None
    sequence = part["sequence"].to_numpy() if drift != "none" and "sequence" in part.columns else None
    recipe = {"family": family, "params": dict(params or {}), "ensemble": ensemble, "seed": seed}
    recipe |= {"weighting": weighting, "noise_floor": noise_floor, "drift": drift}

    def fitted(rows: np.ndarray) -> FittedModel:
        rows_archs = [archs[i] for i in rows]
        return fit_model(rows_archs, y[rows], std=_rows(std, rows), sequence=_rows(sequence, rows), **recipe)

    model, correction, weighted = fitted(train)
    pred = model.predict([archs[i] for i in test])
    metrics = regression_metrics(y[test], pred)
    if refit_all:
        model, correction, weighted = fitted(np.arange(len(y)))
    unit = part["unit"].iloc[0] if "unit" in part.columns else None
    artifact = SurrogateArtifact(
        model=model,
        target=target,
        metric=metric,
        unit=None if pd.isna(unit) else str(unit),
        metrics={
            "test": metrics,
            "n_train": len(train),
            "n_test": len(test),
            "test_fraction": test_fraction,
            "split_seed": seed,
            "fitted_on": "all" if refit_all else "train",
            "fit_seconds": round(time.perf_counter() - start, 2),
            "weighting": weighting if weighted else "none",
            "noise_floor": noise_floor if weighted else None,
            "drift": None if correction is None else correction.summary(),
            "selection": None
            if selection is None
            else {"validation": selection.validation, "scores": selection.scores},
        },
        dataset={
            "sha256": dataset_hash(part),
            "rows": len(part),
            "input_size": _single(part, "input_size"),
            "batch_size": _single(part, "batch_size"),
            "settings_key": _single(part, "settings_key"),
        },
    )
    return FitResult(artifact, y[test], pred, [archs[i].id for i in test], selection, correction)


def _single(part: pd.DataFrame, column: str):
    if column not in part.columns or part[column].isna().all():
        return None
    value = part[column].iloc[0]
    return value.item() if hasattr(value, "item") else value
