"""Fit a surrogate on a dataset frame and evaluate it on held-out architectures."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from accelnas.core.dataset import select
from accelnas.core.errors import DatasetError
from accelnas.core.space import FEATURE_NAMES, Architecture
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.metrics import regression_metrics
from accelnas.surrogates.xgboost_model import XGBoostSurrogate


@dataclass
class FitResult:
    artifact: SurrogateArtifact
    test_true: np.ndarray
    test_pred: np.ndarray
    test_ids: list[str]


def dataset_hash(part: pd.DataFrame) -> str:
    text = "\n".join(f"{a},{v!r}" for a, v in sorted(zip(part["arch_id"], part["value"], strict=True)))
    return hashlib.sha256(text.encode()).hexdigest()


def fit_surrogate(
    frame: pd.DataFrame,
    target: str,
    metric: str,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    model: XGBoostSurrogate | None = None,
) -> FitResult:
    """Fit on a seeded random split of ``frame``'s rows for (target, metric); report held-out metrics."""
    part = select(frame, target, metric)
    if len(part) < 8:
        raise DatasetError(f"{target}:{metric} has {len(part)} architectures; at least 8 are needed to fit and test")
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be within (0, 1)")
    archs = [Architecture.from_config(row) for row in part[list(FEATURE_NAMES)].to_dict("records")]
    y = part["value"].to_numpy(dtype=float)
    order = np.random.default_rng(seed).permutation(len(part))
    n_test = max(2, round(test_fraction * len(part)))
    test, train = order[:n_test], order[n_test:]
    model = model or XGBoostSurrogate(seed=seed)
    model.fit([archs[i] for i in train], y[train])
    pred = model.predict([archs[i] for i in test])
    metrics = regression_metrics(y[test], pred)
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
        },
        dataset={
            "sha256": dataset_hash(part),
            "rows": len(part),
            "input_size": _single(part, "input_size"),
            "batch_size": _single(part, "batch_size"),
            "settings_key": _single(part, "settings_key"),
        },
    )
    return FitResult(artifact, y[test], pred, [archs[i].id for i in test])


def _single(part: pd.DataFrame, column: str):
    if column not in part.columns or part[column].isna().all():
        return None
    value = part[column].iloc[0]
    return value.item() if hasattr(value, "item") else value
