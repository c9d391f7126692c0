"""A search problem: objectives, constraints and an optional reward, answered by a Benchmark's surrogates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelnas.core.errors import AccelnasError
from accelnas.core.space import Architecture
from accelnas.search.objectives import (
    Constraint,
    MnasReward,
    Objective,
    SearchSpecError,
    parse_constraint,
    parse_objective,
    parse_reward,
)
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.benchmark import Benchmark


@dataclass(frozen=True)
class Predictions:
    """Predicted mean and spread of every tracked objective (columns) for architectures (rows)."""

    mean: np.ndarray
    std: np.ndarray


class SearchProblem:
    """Objectives to optimize, constraints to satisfy and an optional MnasNet reward on a Benchmark.

    Every objective named by the objectives, the constraints or the reward is *tracked*: predicted
    for each queried architecture, in the order of :attr:`tracked`.
    """

    def __init__(
        self,
        bench: Benchmark,
        objectives: Sequence[Objective | str],
        constraints: Sequence[Constraint | str] | str = (),
        reward: MnasReward | str | None = None,
    ) -> None:
        if isinstance(objectives, str) or not objectives:
            raise SearchSpecError("a search needs a list of at least one objective")
        # what users type is accepted as well as parsed objects: "accuracy", "latency@zcu102<=5"
        self.objectives = [parse_objective(o) if isinstance(o, str) else o for o in objectives]
        if isinstance(constraints, str):  # one constraint as typed: "latency@zcu102<=5"
            constraints = [constraints]
        self.constraints = [parse_constraint(c) if isinstance(c, str) else c for c in constraints]
        if isinstance(reward, str):  # as typed: "latency@zcu102=5", with MnasNet's w
            reward = parse_reward(reward)
        wrong = [x for x in self.objectives if not isinstance(x, Objective)]
        wrong += [x for x in self.constraints if not isinstance(x, Constraint)]
        wrong += [reward] if reward is not None and not isinstance(reward, MnasReward) else []
        if wrong:
            raise SearchSpecError(
                f"expected objectives, constraints and a reward, got {type(wrong[0]).__name__} {wrong[0]!r}"
            )
        self.reward = reward
        tracked: list[Objective] = []
        for o in [
            *self.objectives,
            *(c.objective for c in self.constraints),
            *((reward.accuracy, reward.performance) if reward else ()),
        ]:
            if o not in tracked:
                tracked.append(o)
        self.tracked = tracked
        self.surrogates: dict[Objective, SurrogateArtifact] = {}
        for o in tracked:
            try:
                self.surrogates[o] = bench.surrogate(o.device, o.metric)
            except AccelnasError as exc:
                raise SearchSpecError(f"objective {o.name}: {exc}") from None
        self._column = {o: i for i, o in enumerate(tracked)}
        self._check_objectives_differ()
        self._check_constraints_overlap()

    def _check_objectives_differ(self) -> None:
        """Refuse two objectives answered by one surrogate (``latency@zcu102`` and ``latency@zcu102/anb``)."""
        seen: dict[tuple[str, str], Objective] = {}
        for o in self.objectives:
            key = (self.target(o), o.metric)
            if key in seen:
                raise SearchSpecError(f"objectives {seen[key].name} and {o.name} are the same ({key[1]} on {key[0]})")
            seen[key] = o

    def _check_constraints_overlap(self) -> None:
        """Refuse bounds on one surrogate (``latency@dev`` and ``latency@dev/sim`` alike) that no value meets."""

        def answered_by(c: Constraint) -> tuple[str, str]:
            return self.target(c.objective), c.objective.metric

        for upper in (c for c in self.constraints if c.op == "<="):
            for lower in (c for c in self.constraints if c.op == ">="):
                if answered_by(upper) == answered_by(lower) and lower.bound > upper.bound:
                    raise SearchSpecError(
                        f"constraints {upper.name} and {lower.name} leave no value of {upper.objective.name}"
                    )

    # -- facts -----------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def unit(self, objective: Objective) -> str:
        return self.surrogates[objective].unit or ""

    def target(self, objective: Objective) -> str:
        """The benchmark target (``device/backend``) answering ``objective``."""
        return self.surrogates[objective].target

    def column(self, objective: Objective) -> int:
        return self._column[objective]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description of the problem."""
        return {
            "objectives": [
                {"name": o.name, "maximize": o.maximize, "unit": self.unit(o), "target": self.target(o)}
                for o in self.objectives
            ],
            "constraints": [c.name for c in self.constraints],
            # every column front.csv holds: the target and settings its predictions were fitted under
            "predicted_by": {
                o.name: {"target": self.target(o), "settings_key": self.surrogates[o].dataset.get("settings_key")}
                for o in self.tracked
            },
            "reward": None
            if self.reward is None
            else {
                "formula": self.reward.name,
                "performance": self.reward.performance.name,
                "target": self.reward.target,
                "w": self.reward.w,
                "exponent": self.reward.exponent,
            },
        }

    # -- evaluation ------------------------------------------------------------------------------
    def predict(self, archs: Sequence[Architecture]) -> Predictions:
        """Predicted mean and std of every tracked objective for ``archs`` (one batch per surrogate)."""
        n = len(archs)
        mean = np.empty((n, len(self.tracked)))
        std = np.empty((n, len(self.tracked)))
        if n:
            for j, o in enumerate(self.tracked):
                mu, sd = self.surrogates[o].predict_dist(list(archs))
                mean[:, j] = mu
                std[:, j] = sd
        return Predictions(mean, std)

    def objective_values(self, mean: np.ndarray) -> np.ndarray:
        """The columns of the search objectives, in their natural units and directions."""
        mean = np.atleast_2d(mean)
        return mean[:, [self._column[o] for o in self.objectives]]

    def minimization(self, values: np.ndarray) -> np.ndarray:
        """Objective values turned into minimization form (maximized objectives negated)."""
        signs = np.array([-1.0 if o.maximize else 1.0 for o in self.objectives])
        return np.atleast_2d(values) * signs

    def violation(self, mean: np.ndarray) -> np.ndarray:
        """Total relative constraint violation per architecture (0 = feasible)."""
        mean = np.atleast_2d(mean)
        total = np.zeros(len(mean))
        for c in self.constraints:
            total += c.violation(mean[:, self._column[c.objective]])
        return total

    def signed_constraints(self, mean: np.ndarray) -> np.ndarray:
        """Constraint values in pymoo's ``G <= 0`` form, one column per constraint."""
        mean = np.atleast_2d(mean)
        if not self.constraints:
            return np.zeros((len(mean), 0))
        return np.column_stack([c.signed(mean[:, self._column[c.objective]]) for c in self.constraints])

    def reward_values(self, mean: np.ndarray) -> np.ndarray | None:
        """The MnasNet reward per architecture, or None without a reward."""
        if self.reward is None:
            return None
        mean = np.atleast_2d(mean)
        acc = mean[:, self._column[self.reward.accuracy]]
        perf = mean[:, self._column[self.reward.performance]]
        return self.reward(acc, perf)
