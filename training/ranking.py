"""Rank agreement between training recipes: Kendall τ, cost–τ Pareto fronts, the paper's ablation files.

The same functions score proxies found by :mod:`accelnas.training.proxy_search` and analyse the
published ablation results of Accel-NASBench (``ablations/proxified-seedS.csv`` and
``fewproxy-seedS.csv``: the same 117 architectures trained with the chosen proxy and with fewer
proxies, three seeds each).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from accelnas.core.errors import DatasetError, InvalidArchitectureError
from accelnas.core.space import NUM_STAGES, Architecture

log = logging.getLogger(__name__)

# Columns of the published ablation CSVs (headerless).
ABLATION_COLUMNS: tuple[str, ...] = (
    "row", "job_id", "model_num", "model_seed", "top1", "top5", "macs_m", "params_m", "train_seconds",
    *(f"e{i}" for i in range(NUM_STAGES)), *(f"k{i}" for i in range(NUM_STAGES)),
    *(f"l{i}" for i in range(NUM_STAGES)), *(f"se{i}" for i in range(NUM_STAGES)),
)  # fmt: skip
# The released training times are wall seconds of a job on one node with 4 GPUs (the release's own
# analysis script converts them to node-hours that way).
ABLATION_GPUS_PER_JOB = 4
_ABLATION_NAME = re.compile(r"^(?P<recipe>.+)-seed(?P<seed>\d+)\.csv$")  # the recipe name may hold "-"
# what ``accelnas proxy-analyse --out`` writes: left out of a folder's ablation files without a warning
ANALYSIS_FILES: tuple[str, ...] = ("ablation_tau.csv", "ablation_summary.csv")


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b of two equally long sequences (NaN when undefined, e.g. a constant sequence)."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"τ needs equally long sequences, got {x.size} and {y.size}")
    if x.size < 2:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def paired_tau(reference: Mapping[str, float], proxy: Mapping[str, float]) -> tuple[float, int]:
    """τ over the architectures both mappings have, and how many that is."""
    common = sorted(set(reference) & set(proxy))
    if len(common) < 2:
        return float("nan"), len(common)
    return kendall_tau([reference[k] for k in common], [proxy[k] for k in common]), len(common)


def pareto_front(costs: Sequence[float], taus: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (cost lower or equal and τ higher or equal, one strictly)."""
    points = [(c, t, i) for i, (c, t) in enumerate(zip(costs, taus, strict=True)) if math.isfinite(t)]
    front = []
    for c, t, i in points:
        dominated = any((c2 <= c and t2 >= t) and (c2 < c or t2 > t) for c2, t2, _ in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: costs[i])


# -- the published ablation files ---------------------------------------------------------------------
def read_ablation_csv(path: str | Path) -> pd.DataFrame:
    """One ablation CSV with named columns and an ``arch_id`` column; one-line errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"ablation file not found: {path}")
    try:
        frame = pd.read_csv(path, header=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV: {exc}") from None
    if frame.shape[1] != len(ABLATION_COLUMNS):
        raise DatasetError(f"{path}: expected {len(ABLATION_COLUMNS)} columns, got {frame.shape[1]}")
    frame.columns = list(ABLATION_COLUMNS)
    ids = []
    for i, row in enumerate(frame.itertuples(index=False)):
        r = row._asdict()
        try:
            arch = Architecture.from_lists(
                e=[int(r[f"e{s}"]) for s in range(NUM_STAGES)],
                k=[int(r[f"k{s}"]) for s in range(NUM_STAGES)],
                l=[int(r[f"l{s}"]) for s in range(NUM_STAGES)],
                se=[_bool(r[f"se{s}"]) for s in range(NUM_STAGES)],
            )
        except (InvalidArchitectureError, ValueError, TypeError) as exc:
            raise DatasetError(f"{path}: row {i}: {exc}") from None
        ids.append(arch.id)
    frame.insert(0, "arch_id", ids)
    for col in ("top1", "top5", "train_seconds"):
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
        if bad.size:
            raise DatasetError(f"{path}: row {bad[0]}: {col} {frame[col].iloc[bad[0]]!r} is not a number")
        frame[col] = values
    return frame


def _bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in {"true", "1"}:
        return True
    if text in {"false", "0"}:
        return False
    raise ValueError(f"squeeze-excite value {value!r} is not a boolean")


@dataclass
class RecipeRuns:
    """Accuracies and training times of one recipe over several seeds (architectures in a fixed order)."""

    name: str
    arch_ids: list[str]
    top1: dict[int, np.ndarray] = field(default_factory=dict)  # seed -> accuracies
    seconds: dict[int, np.ndarray] = field(default_factory=dict)

    def mean_top1(self) -> np.ndarray:
        return np.mean([self.top1[s] for s in sorted(self.top1)], axis=0)

    def mean_seconds_per_model(self) -> float:
        return float(np.mean([self.seconds[s].mean() for s in self.seconds]))


def read_ablations(directory: str | Path) -> dict[str, RecipeRuns]:
    """Every ``<recipe>-seed<S>.csv`` of a directory, grouped by recipe; all must list the same architectures."""
    directory = Path(directory)
    csvs = sorted(directory.glob("*.csv")) if directory.is_dir() else []
    files = [p for p in csvs if _ABLATION_NAME.match(p.name)]
    for path in csvs:
        if path not in files and path.name not in ANALYSIS_FILES:
            log.warning("%s is not named <recipe>-seed<N>.csv and is left out", path)
    if not files:
        raise DatasetError(f"no <recipe>-seed<N>.csv ablation files in {directory}")
    runs: dict[str, RecipeRuns] = {}
    order: list[str] | None = None
    seen: dict[tuple[str, int], Path] = {}  # a seed written two ways (seed1, seed01) is one seed
    for path in files:
        m = _ABLATION_NAME.match(path.name)
        assert m is not None
        seed = int(m["seed"])
        earlier = seen.setdefault((m["recipe"], seed), path)
        if earlier != path:
            raise DatasetError(f"{earlier.name} and {path.name} in {directory} are both seed {seed} of {m['recipe']}")
        frame = read_ablation_csv(path)
        ids = list(frame["arch_id"])
        if order is None:
            order = ids
        elif ids != order:
            raise DatasetError(f"{path}: lists different architectures (or another order) than {files[0].name}")
        recipe = runs.setdefault(m["recipe"], RecipeRuns(m["recipe"], ids))
        recipe.top1[seed] = frame["top1"].to_numpy(dtype=float)
        recipe.seconds[seed] = frame["train_seconds"].to_numpy(dtype=float)
    return runs


@dataclass
class AblationAnalysis:
    """τ between recipes (per seed and of seed means), τ across seeds, cost per model."""

    recipes: list[str]
    n_archs: int
    between: list[dict[str, Any]]  # rows: recipe_a, recipe_b, seed_a, seed_b, tau
    across_seeds: list[dict[str, Any]]  # rows: recipe, seed_a, seed_b, tau
    costs: list[dict[str, Any]]  # rows: recipe, seconds_per_model, gpu_hours_per_model
    gpus_per_job: int

    def table(self) -> pd.DataFrame:
        """One summary row per recipe pair and per recipe (``recipe`` names the recipe of the latter)."""
        rows = []
        for a, b in itertools.combinations(self.recipes, 2):
            pairs = [r for r in self.between if {r["recipe_a"], r["recipe_b"]} == {a, b}]
            same_seed = [r["tau"] for r in pairs if r["seed_a"] == r["seed_b"] and r["seed_a"] != "mean"]
            mean_row = [r["tau"] for r in pairs if r["seed_a"] == "mean"]
            rows.append({
                "comparison": f"{a} vs {b}",
                "recipe": None,
                "tau_seed_means": mean_row[0] if mean_row else float("nan"),
                "tau_same_seed_mean": float(np.mean(same_seed)) if same_seed else float("nan"),
                "tau_same_seed_min": float(np.min(same_seed)) if same_seed else float("nan"),
                "tau_same_seed_max": float(np.max(same_seed)) if same_seed else float("nan"),
            })  # fmt: skip
        for name in self.recipes:
            taus = [r["tau"] for r in self.across_seeds if r["recipe"] == name]
            rows.append({
                "comparison": f"{name} seed vs seed",
                "recipe": name,
                "tau_seed_means": float("nan"),
                "tau_same_seed_mean": float(np.mean(taus)) if taus else float("nan"),
                "tau_same_seed_min": float(np.min(taus)) if taus else float("nan"),
                "tau_same_seed_max": float(np.max(taus)) if taus else float("nan"),
            })  # fmt: skip
        return pd.DataFrame(rows)


def analyse_ablations(runs: Mapping[str, RecipeRuns], gpus_per_job: int = ABLATION_GPUS_PER_JOB) -> AblationAnalysis:
    """τ of every recipe pair (same seeds, and the seed means) and of every seed pair within a recipe."""
    names = sorted(runs)
    between = []
    for a, b in itertools.combinations(names, 2):
        ra, rb = runs[a], runs[b]
        for sa in sorted(ra.top1):
            for sb in sorted(rb.top1):
                between.append({"recipe_a": a, "recipe_b": b, "seed_a": sa, "seed_b": sb,
                                "tau": kendall_tau(ra.top1[sa], rb.top1[sb])})  # fmt: skip
        between.append({"recipe_a": a, "recipe_b": b, "seed_a": "mean", "seed_b": "mean",
                        "tau": kendall_tau(ra.mean_top1(), rb.mean_top1())})  # fmt: skip
    across = []
    for name in names:
        r = runs[name]
        for sa, sb in itertools.combinations(sorted(r.top1), 2):
            across.append({"recipe": name, "seed_a": sa, "seed_b": sb, "tau": kendall_tau(r.top1[sa], r.top1[sb])})
    costs = []
    for name in names:
        sec = runs[name].mean_seconds_per_model()
        costs.append({"recipe": name, "seconds_per_model": sec, "gpu_hours_per_model": sec * gpus_per_job / 3600,
                      "mean_top1": float(runs[name].mean_top1().mean())})  # fmt: skip
    n = len(next(iter(runs.values())).arch_ids)
    return AblationAnalysis(names, n, between, across, costs, gpus_per_job)
