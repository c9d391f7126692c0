"""A query budget over unique architectures, with a cache: what optimizers call to evaluate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from accelnas.core.space import Architecture, as_architecture
from accelnas.search.problem import SearchProblem


@dataclass(frozen=True)
class Evaluation:
    """One queried architecture: tracked means and spreads, constraint violation, reward, query number."""

    arch: Architecture
    mean: np.ndarray
    std: np.ndarray
    violation: float
    reward: float | None
    query: int  # 1-based: the how-many-th unique architecture of its run

    @property
    def feasible(self) -> bool:
        return self.violation <= 0.0


class Evaluator:
    """Answers queries from the problem's surrogates; each *unique* architecture costs one unit of budget.

    Architectures seen before are answered from the cache for free. Once the budget is spent, new
    architectures are answered with ``None``.
    """

    def __init__(self, problem: SearchProblem, budget: int) -> None:
        if budget < 1:
            raise ValueError("the query budget must be >= 1")
        self.problem = problem
        self.budget = budget
        self.history: list[Evaluation] = []
        self._cache: dict[str, Evaluation] = {}

    @property
    def used(self) -> int:
        return len(self.history)

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    def known(self, arch: Architecture) -> bool:
        return arch.id in self._cache

    def evaluate(self, archs: Sequence[Architecture | str | Mapping[str, Any]]) -> list[Evaluation | None]:
        """Evaluate ``archs`` (architectures, ids or configs) in order; new ones beyond the budget come
        back as ``None``."""
        archs = [as_architecture(a) for a in archs]
        new: list[Architecture] = []
        pending: set[str] = set()
        for a in archs:
            if a.id not in self._cache and a.id not in pending and len(new) < self.remaining:
                new.append(a)
                pending.add(a.id)
        for e in evaluate_free(self.problem, new):
            e = replace(e, query=self.used + 1)
            self.history.append(e)
            self._cache[e.arch.id] = e
        return [self._cache.get(a.id) for a in archs]

    def evaluate_one(self, arch: Architecture) -> Evaluation | None:
        return self.evaluate([arch])[0]


def evaluate_free(problem: SearchProblem, archs: Sequence[Architecture]) -> list[Evaluation]:
    """Evaluations outside any budget (references such as EfficientNet-B0); their query number is 0."""
    pred = problem.predict(archs)
    violation = problem.violation(pred.mean)
    reward = problem.reward_values(pred.mean)
    return [
        Evaluation(a, pred.mean[i], pred.std[i], float(violation[i]), None if reward is None else float(reward[i]), 0)
        for i, a in enumerate(archs)
    ]
