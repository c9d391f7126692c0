"""Fidelity metrics of a surrogate's predictions."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """R², Kendall τ, Spearman ρ, MAE, RMSE, and the shares of predictions within ±5% / ±10%.

    τ and ρ are NaN where the truth or the predictions are constant; R² where the truth is.
    """
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.shape != p.shape or t.size < 2:
        raise ValueError("need two equally long arrays of at least 2 values")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    rel = np.abs(p - t) / np.abs(t)
    with warnings.catch_warnings():  # constant input: the rank correlations are NaN, as documented
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        tau = float(stats.kendalltau(t, p).statistic)
        rho = float(stats.spearmanr(t, p).statistic)
    return {
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "kendall_tau": tau,
        "spearman": rho,
        "mae": float(np.mean(np.abs(t - p))),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))),
        "within_5pct": float(np.mean(rel <= 0.05)),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "n": int(t.size),
    }
