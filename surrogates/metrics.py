"""Fidelity metrics of a surrogate's predictions."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """R², Kendall τ, Spearman ρ, MAE, RMSE, and the shares of predictions within ±5% / ±10% of the truth.

    τ and ρ are NaN where the truth or the predictions are constant; R² where the truth is. A
    prediction equal to its truth counts as within (also at 0); every metric is NaN where a value is.
    """
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"need 1-D arrays of truths and predictions, got shapes {t.shape} and {p.shape}")
    if t.size != p.size or t.size < 2:
        raise ValueError(f"need equally many truths and predictions, at least 2, got {t.size} and {p.size}")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    error = np.abs(p - t)
    with np.errstate(divide="ignore", invalid="ignore"):  # exact at 0: 0/0 is within, x/0 beyond
        rel = np.where(error == 0, 0.0, error / np.abs(t))
    missing = bool(np.isnan(t).any() or np.isnan(p).any())
    with warnings.catch_warnings():  # constant input: the rank correlations are NaN, as documented
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        tau = float(stats.kendalltau(t, p).statistic)
        rho = float(stats.spearmanr(t, p).statistic)
    return {
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "kendall_tau": tau,
        "spearman": rho,
        "mae": float(np.mean(error)),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "within_5pct": float("nan") if missing else float(np.mean(rel <= 0.05)),
        "within_10pct": float("nan") if missing else float(np.mean(rel <= 0.10)),
        "n": int(t.size),
    }
