"""One number per evaluation for optimizers that compare architectures pairwise (evolution).

* With a reward (MnasNet), the fitness is the reward.
* With one objective, it is that objective (negated when minimized).
* With several, each comparison draws random weights and uses the weighted Chebyshev scalarization
  of the objectives normalized by the range seen so far (as ParEGO does), so successive tournaments
  push towards different parts of the Pareto front.

Feasible architectures always beat infeasible ones; among infeasible ones the smaller violation wins.
"""

from __future__ import annotations

import random

import numpy as np

from accelnas.search.evaluator import Evaluation
from accelnas.search.problem import SearchProblem


class Fitness:
    """Comparison keys (higher is better) for evaluations of one problem."""

    def __init__(self, problem: SearchProblem, rng: random.Random) -> None:
        self.problem = problem
        self.rng = rng
        n = len(problem.objectives)
        self._lower = np.full(n, np.inf)
        self._upper = np.full(n, -np.inf)
        self.scalarized = problem.reward is None and n > 1

    def observe(self, evaluations: list[Evaluation]) -> None:
        """Widen the running objective range with newly queried architectures."""
        if not evaluations or not self.scalarized:
            return
        values = self._minimization(np.array([e.mean for e in evaluations]))
        self._lower = np.minimum(self._lower, values.min(axis=0))
        self._upper = np.maximum(self._upper, values.max(axis=0))

    def draw_weights(self) -> np.ndarray | None:
        """Fresh random weights on the simplex (None when no scalarization is needed)."""
        if not self.scalarized:
            return None
        w = np.array([self.rng.expovariate(1.0) for _ in self.problem.objectives])
        return w / w.sum()

    def key(self, e: Evaluation, weights: np.ndarray | None = None) -> tuple[bool, float]:
        """(feasible, score): tuples compare feasibility first."""
        if not e.feasible:
            return (False, -e.violation)
        if e.reward is not None:
            return (True, e.reward)
        values = self._minimization(e.mean[None, :])[0]
        if not self.scalarized:
            return (True, -float(values[0]))
        span = np.where(self._upper > self._lower, self._upper - self._lower, 1.0)
        z = (values - self._lower) / span
        return (True, -float(np.max(weights * z)))

    def _minimization(self, mean: np.ndarray) -> np.ndarray:
        return self.problem.minimization(self.problem.objective_values(mean))
