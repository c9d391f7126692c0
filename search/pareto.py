"""Pareto fronts and hypervolume on normalized objectives.

Hypervolume is measured in a normalized minimization space: every objective is turned into
minimization form (accuracy and throughput negated) and scaled so that 0 is the best and 1 the worst
value predicted for :data:`REFERENCE_SAMPLE` architectures drawn uniformly with seed
:data:`REFERENCE_SEED` (EfficientNet-B0 included). The reference point is
:data:`REFERENCE_POINT` (1.1) on every normalized axis, i.e. 10% of the sampled range beyond the
worst sampled value. Those reference queries are not charged to any optimizer's budget; the bounds
depend only on the benchmark and the objectives, so every optimizer and seed is measured alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.search.evaluator import Evaluation
from accelnas.search.problem import SearchProblem

REFERENCE_SAMPLE = 1000
# outside the seeds a search takes (0 .. 2**31 - 1), so no run re-draws the reference sample itself
REFERENCE_SEED = 2**31
REFERENCE_POINT = 1.1


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (minimization) that no other row dominates.

    Of identical rows only the first is kept.
    """
    points = np.atleast_2d(np.asarray(points, dtype=float))
    n = len(points)
    keep = np.ones(n, dtype=bool)
    index = np.arange(n)
    for start in range(0, n, 256):
        block = points[start : start + 256]  # rows whose dominance is decided
        le = np.all(points[None, :, :] <= block[:, None, :], axis=2)  # [i, j]: row j <= row i everywhere
        lt = np.any(points[None, :, :] < block[:, None, :], axis=2)
        earlier_twin = ~lt & (index[None, :] < index[start : start + 256, None])
        keep[start : start + 256] = ~np.any(le & (lt | earlier_twin), axis=1)
    return keep


@dataclass(frozen=True)
class Normalizer:
    """Affine map of minimization-form objectives onto [0, 1] (0 = best, 1 = worst of the sample)."""

    lower: np.ndarray
    upper: np.ndarray
    reference: float = REFERENCE_POINT

    @classmethod
    def for_problem(cls, problem: SearchProblem, num: int = REFERENCE_SAMPLE, seed: int = REFERENCE_SEED) -> Normalizer:
        archs = [EFFICIENTNET_B0, *sample(num, seed, exclude={EFFICIENTNET_B0.id})]
        values = problem.minimization(problem.objective_values(problem.predict(archs).mean))
        lower, upper = values.min(axis=0), values.max(axis=0)
        upper = np.where(upper > lower, upper, lower + 1.0)
        return cls(lower, upper)

    def __call__(self, minimization_values: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(minimization_values) - self.lower) / (self.upper - self.lower)

    def reference_values(self, problem: SearchProblem) -> list[float]:
        """The reference point in the objectives' natural units and directions."""
        ref_min = self.lower + self.reference * (self.upper - self.lower)
        return [float(-v if o.maximize else v) for v, o in zip(ref_min, problem.objectives, strict=True)]

    def describe(self, problem: SearchProblem) -> dict[str, Any]:
        best = [float(-v if o.maximize else v) for v, o in zip(self.lower, problem.objectives, strict=True)]
        worst = [float(-v if o.maximize else v) for v, o in zip(self.upper, problem.objectives, strict=True)]
        return {
            "space": "minimization, (value - best) / (worst - best) per objective",
            "sample": f"{REFERENCE_SAMPLE} uniform architectures (seed {REFERENCE_SEED}) and EfficientNet-B0",
            "best": dict(zip(problem.names, best, strict=True)),
            "worst": dict(zip(problem.names, worst, strict=True)),
            "reference_point_normalized": self.reference,
            "reference_point": dict(zip(problem.names, self.reference_values(problem), strict=True)),
        }


def hypervolume(normalized: np.ndarray, reference: float = REFERENCE_POINT) -> float:
    """Hypervolume dominated by the normalized minimization points, bounded by ``reference`` per axis."""
    from pymoo.indicators.hv import HV

    points = np.atleast_2d(np.asarray(normalized, dtype=float))
    if points.size == 0:
        return 0.0
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    points = points[non_dominated(points)]
    return float(HV(ref_point=np.full(points.shape[1], reference))(points))


def front(problem: SearchProblem, evaluations: Sequence[Evaluation]) -> list[Evaluation]:
    """The feasible evaluations no other feasible one dominates on the objectives, best first objective first."""
    feasible = [e for e in evaluations if e.feasible]
    if not feasible:
        return []
    values = problem.minimization(problem.objective_values(np.array([e.mean for e in feasible])))
    mask = non_dominated(values)
    chosen = [e for e, keep in zip(feasible, mask, strict=True) if keep]
    return sorted(chosen, key=lambda e: problem.minimization(problem.objective_values(e.mean))[0].tolist())


def anytime_hypervolume(
    problem: SearchProblem,
    normalizer: Normalizer,
    history: Sequence[Evaluation],
    checkpoints: Sequence[int],
) -> list[tuple[int, float]]:
    """Hypervolume of the feasible architectures among the first ``n`` queries, for each checkpoint ``n``.

    Checkpoints beyond the number of queries made are measured at the end of the history.
    """
    if not history:
        return [(int(n), 0.0) for n in checkpoints]
    values = normalizer(problem.minimization(problem.objective_values(np.array([e.mean for e in history]))))
    feasible = np.array([e.feasible for e in history])
    out = []
    running = np.empty((0, values.shape[1]))  # non-dominated feasible rows so far
    done = 0
    for n in sorted(int(c) for c in checkpoints):
        upto = min(n, len(history))
        if upto > done:
            rows = np.vstack([running, values[done:upto][feasible[done:upto]]])
            running = rows[non_dominated(rows)] if len(rows) else rows
            done = upto
        out.append((n, hypervolume(running, normalizer.reference) if len(running) else 0.0))
    return out


def checkpoints_for(budget: int, num: int = 40, extra: Sequence[int] = (100, 500, 1000, 2000)) -> list[int]:
    """Roughly log-spaced query counts from 10 to ``budget``, plus ``extra`` ones within the budget."""
    grid = np.unique(np.round(np.geomspace(min(10, budget), budget, num)).astype(int))
    return sorted({*grid.tolist(), *(e for e in extra if e <= budget), budget})
