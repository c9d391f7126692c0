"""Plots of a search (Pareto front with EfficientNet-B0, anytime hypervolume) and of a verification."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from accelnas.core.figures import pyplot, save_figure
from accelnas.search.run import RunResult, SearchOutcome

MAX_BACKGROUND = 20000  # queried architectures drawn behind the front


def plot_front(outcome: SearchOutcome, path: str | Path) -> Path:
    """Every queried architecture, the Pareto front and EfficientNet-B0, one panel per other objective.

    The first objective is on the y axis; with a single objective, its value against the query number.
    """
    plt = pyplot()
    problem = outcome.problem
    queried = {e.arch.id: e for r in outcome.runs for e in r.history}
    every = list(queried.values())
    if len(every) > MAX_BACKGROUND:
        rng = np.random.default_rng(0)
        every = [every[i] for i in rng.choice(len(every), MAX_BACKGROUND, replace=False)]
    y_obj = problem.objectives[0]
    panels = problem.objectives[1:] or [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    yc = problem.column(y_obj)
    for ax, x_obj in zip(axes[0], panels, strict=True):
        if x_obj is None:
            for r in outcome.runs:
                ax.plot([e.query for e in r.history], [e.mean[yc] for e in r.history], ".", ms=2, label=r.label)
            ax.axhline(outcome.b0.mean[yc], color="red", ls="--", lw=1, label="EfficientNet-B0")
            ax.set_xlabel("queries")
        else:
            xc = problem.column(x_obj)
            feasible = np.array([e.feasible for e in every])
            xs = np.array([e.mean[xc] for e in every])
            ys = np.array([e.mean[yc] for e in every])
            ax.scatter(xs[feasible], ys[feasible], s=4, color="0.75", label="queried", rasterized=True)
            if (~feasible).any():
                ax.scatter(xs[~feasible], ys[~feasible], s=4, color="0.9", marker="x", label="infeasible")
            fx = np.array([f.evaluation.mean[xc] for f in outcome.front])
            fy = np.array([f.evaluation.mean[yc] for f in outcome.front])
            marker_line = "-o" if len(problem.objectives) == 2 else "o"
            order = np.argsort(fx)
            ax.plot(fx[order], fy[order], marker_line, ms=3.5, lw=1, color="tab:blue", label="Pareto front")
            ax.plot(outcome.b0.mean[xc], outcome.b0.mean[yc], "*", ms=14, color="red", label="EfficientNet-B0")
            ax.set_xlabel(f"{x_obj.name} [{problem.unit(x_obj)}]")
        ax.set_ylabel(f"{y_obj.name} [{problem.unit(y_obj)}]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    constraints = ", ".join(c.name for c in problem.constraints)
    fig.suptitle(f"{', '.join(problem.names)}" + (f"  (subject to {constraints})" if constraints else ""), fontsize=10)
    return save_figure(fig, path)


def plot_anytime(runs: Sequence[RunResult], path: str | Path, title: str = "") -> Path:
    """Hypervolume against queries: mean over seeds per optimizer with a ±1 std band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name in dict.fromkeys(r.optimizer for r in runs):
        group = [r for r in runs if r.optimizer == name]
        xs = np.array([n for n, _ in group[0].curve])
        hv = np.array([[v for _, v in r.curve] for r in group])
        mean, std = hv.mean(axis=0), hv.std(axis=0)
        line = ax.plot(xs, mean, label=f"{name} ({len(group)} seeds)")[0]
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("unique architectures queried")
    ax.set_ylabel("hypervolume (normalized objectives)")
    ax.set_title(title or "anytime hypervolume", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_verification(
    measured: np.ndarray,
    predicted: np.ndarray,
    path: str | Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
    same_scale: bool,
) -> Path:
    """Measured (x) against predicted (y); the identity line only when both are the same quantity."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    if same_scale:
        lo = float(min(measured.min(), predicted.min()))
        hi = float(max(measured.max(), predicted.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--", label="y = x")
        ax.legend(fontsize=8)
    ax.scatter(measured, predicted, s=20)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
