"""Plots of proxy searches and recipe comparisons (PNG, matplotlib Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from accelnas.core.figures import pyplot, save_figure


def cost_tau_front(results: Sequence, path: str | Path, *, cost_unit: str = "s") -> Path:
    """Cost per architecture vs τ of every fully scored candidate, per strategy, with the Pareto front,
    the threshold and each strategy's choice."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    markers = {"grid": "o", "halving": "s", "optuna": "^"}
    threshold = None
    for r in results:
        threshold = r.threshold
        xs = [s.seconds_per_arch for s in r.final]
        ys = [s.tau for s in r.final]
        ax.scatter(xs, ys, marker=markers.get(r.strategy, "o"), s=36, alpha=0.55, label=f"{r.strategy} ({len(xs)})")
        if r.front:
            ax.plot([s.seconds_per_arch for s in r.front], [s.tau for s in r.front], lw=1, alpha=0.8)
        if r.chosen is not None:
            ax.scatter([r.chosen.seconds_per_arch], [r.chosen.tau], marker="*", s=220, edgecolor="k", zorder=5,
                       label=f"{r.strategy} choice: {r.chosen.name}")  # fmt: skip
    if threshold is not None:
        ax.axhline(threshold, color="0.4", ls="--", lw=1, label=f"τ threshold {threshold:g}")
    ax.set_xlabel(f"training cost per architecture [{cost_unit}]")
    ax.set_ylabel("Kendall τ vs reference")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("training proxies: cost vs rank agreement", fontsize=10)
    return save_figure(fig, path)


def recipe_scatter(x: np.ndarray, y: np.ndarray, xerr: np.ndarray | None, yerr: np.ndarray | None,
                   xlabel: str, ylabel: str, title: str, path: str | Path) -> Path:  # fmt: skip
    """Per-architecture accuracy under one recipe against another (seed means with seed spread)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=".", color="k", ecolor="0.6", elinewidth=0.6, ms=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
