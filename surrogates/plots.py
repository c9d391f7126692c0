"""Plots people look at: predicted-vs-measured scatter, measurement drift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accelnas.core import files
from accelnas.core.figures import pyplot, save_figure
from accelnas.surrogates.drift import DriftCorrection


@dataclass
class ScatterPanel:
    title: str
    measured: np.ndarray
    predicted: np.ndarray
    unit: str = ""
    kendall_tau: float | None = None
    r2: float | None = None


def predicted_vs_measured(panels: Sequence[ScatterPanel], path: str | Path) -> Path:
    """One scatter per panel with the identity line and τ/R² in the title; writes a PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.4), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        lo = float(min(p.measured.min(), p.predicted.min()))
        hi = float(max(p.measured.max(), p.predicted.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1, ls="--", label="y = x")
        ax.scatter(p.measured, p.predicted, s=18, alpha=0.8)
        stats = []
        if p.kendall_tau is not None:
            stats.append(f"τ={p.kendall_tau:.3f}")
        if p.r2 is not None:
            stats.append(f"R²={p.r2:.3f}")
        ax.set_title(f"{p.title}\n{', '.join(stats)}  (n={len(p.measured)})", fontsize=10)
        ax.set_xlabel(f"measured [{p.unit}]")
        ax.set_ylabel(f"predicted [{p.unit}]")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def drift_over_sequence(correction: DriftCorrection, title: str, path: str | Path) -> Path:
    """Cross-fitted residuals against when they were measured, with the correction divided out; a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 3.6))
    order = np.argsort(correction.sequence, kind="stable")
    x = correction.sequence[order]
    ax.scatter(x, 100 * np.expm1(correction.residual[order]), s=4, alpha=0.35, color="0.45", label="residual")
    ax.plot(x, 100 * np.expm1(correction.offsets[order]), color="C3", lw=1.8, label="drift correction")
    ax.axhline(0, color="0.6", lw=1, ls="--")
    f = correction.summary()
    ax.set_title(f"{title}: drift ±{f['spread_pct']:.1f}% over {f['blocks']} blocks of {f['block']}, "
                 f"{100 * f['explained']:.0f}% of the residual variance", fontsize=10)  # fmt: skip
    ax.set_xlabel("sequence (when measured)")
    ax.set_ylabel("measured / predicted − 1 [%]")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path)


def drift_plot(correction: DriftCorrection | None, title: str, path: str | Path) -> Path | None:
    """:func:`drift_over_sequence` where drift was corrected; otherwise remove the plot an earlier fit
    left at ``path``, which would describe a correction this surrogate does not make."""
    if correction is not None:
        return drift_over_sequence(correction, title, path)
    files.remove(path, "drift plot of an earlier fit")
    return None
