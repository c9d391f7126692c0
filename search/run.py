"""Run optimizers over seeds on one problem; collect fronts, hypervolumes and the B0 comparison."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accelnas.core.records import is_whole
from accelnas.core.space import EFFICIENTNET_B0, space_size
from accelnas.search.compare import B0Comparison, compare_with_b0
from accelnas.search.evaluator import Evaluation, Evaluator, evaluate_free
from accelnas.search.objectives import SearchSpecError
from accelnas.search.optimizers import check, check_options_used, run_optimizer
from accelnas.search.pareto import Normalizer, anytime_hypervolume, checkpoints_for, front
from accelnas.search.problem import SearchProblem

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """One optimizer run: every unique architecture queried, in order, and its anytime hypervolume."""

    optimizer: str
    seed: int
    budget: int
    history: list[Evaluation]
    seconds: float
    curve: list[tuple[int, float]]  # (queries, hypervolume of the feasible ones among them)

    @property
    def queries(self) -> int:
        return len(self.history)

    @property
    def hypervolume(self) -> float:
        return self.curve[-1][1] if self.curve else 0.0

    def hypervolume_at(self, queries: int) -> float:
        """The hypervolume after ``queries`` queries, one of the checkpoints ``search`` was given."""
        recorded = dict(self.curve)
        if queries not in recorded:
            counts = list(recorded)
            shown = ", ".join(str(n) for n in counts[:12]) + (f", ..., {counts[-1]}" if len(counts) > 12 else "")
            raise SearchSpecError(
                f"{self.label} has no hypervolume at {queries} queries; pass it in search's checkpoints "
                f"(recorded: {shown or '-'})"
            )
        return recorded[queries]

    @property
    def label(self) -> str:
        return f"{self.optimizer}/seed{self.seed}"


@dataclass
class FrontEntry:
    evaluation: Evaluation
    found_by: str  # "<optimizer>/seed<seed>@<query>" of the first run that queried it


@dataclass
class SearchOutcome:
    """Everything a search produced."""

    problem: SearchProblem
    normalizer: Normalizer
    runs: list[RunResult]
    b0: Evaluation
    front: list[FrontEntry]
    comparisons: list[B0Comparison]
    checkpoints: list[int] = field(default_factory=list)

    def best_reward(self) -> FrontEntry | None:
        """The feasible architecture with the highest reward over all runs (reward searches only)."""
        if self.problem.reward is None:
            return None
        best: FrontEntry | None = None
        for r in self.runs:
            for e in r.history:
                if e.feasible and (best is None or e.reward > best.evaluation.reward):
                    best = FrontEntry(e, f"{r.label}@{e.query}")
        return best

    def hypervolume_table(self, at: Sequence[int] | None = None) -> dict[str, dict[int, tuple[float, float, int]]]:
        """{optimizer: {queries: (mean, std, seeds)}} at the given query counts (default: the summary ones)."""
        at = [] if at is None else list(at)  # a numpy array too
        at = at or self.summary_points()
        table: dict[str, dict[int, tuple[float, float, int]]] = {}
        for name in dict.fromkeys(r.optimizer for r in self.runs):
            runs = [r for r in self.runs if r.optimizer == name]
            table[name] = {}
            for n in at:
                values = np.array([r.hypervolume_at(n) for r in runs])
                table[name][n] = (float(values.mean()), float(values.std()), len(values))
        return table

    def summary_points(self) -> list[int]:
        budget = max(r.budget for r in self.runs)
        return [n for n in (100, 500, 2000) if n < budget] + [budget]


def search(
    problem: SearchProblem,
    optimizers: Sequence[str],
    budget: int,
    seeds: Sequence[int],
    options: dict[str, Any] | None = None,
    *,
    checkpoints: Sequence[int] | None = None,
    progress: Callable[[RunResult, int, int], None] | None = None,
) -> SearchOutcome:
    """Run every optimizer with every seed for ``budget`` unique queries each."""
    if not is_whole(budget) or budget < 1:
        raise SearchSpecError(f"the query budget must be a whole number >= 1, got {budget!r}")
    if budget > space_size():  # more than a run can spend (and past what numpy's integers hold)
        raise SearchSpecError(f"the query budget {budget} exceeds the {space_size():,} architectures of the space")
    # lists, tuples, numpy arrays or generators: taken once, as a list
    optimizers = [] if isinstance(optimizers, str) else list(optimizers)
    seeds = [] if isinstance(seeds, str) else list(seeds)
    if not optimizers or not seeds:
        raise SearchSpecError("give at least one optimizer and one seed (as lists)")
    bad = [s for s in seeds if not is_whole(s) or not 0 <= s < 2**31]
    if bad:
        raise SearchSpecError(f"seeds must be whole numbers within [0, 2**31), got {bad[0]!r}")
    seeds = [int(s) for s in seeds]  # numpy integers too: random.Random takes only Python ints
    budget = int(budget)
    for name in optimizers:
        check(name, options)  # unknown names and bad options fail before anything runs
    check_options_used(optimizers, options)
    normalizer = Normalizer.for_problem(problem)
    given = [] if checkpoints is None else list(checkpoints)
    points = sorted(set(given or checkpoints_for(budget)) | {100, 500, 2000, budget})
    points = [n for n in points if n <= budget]
    runs: list[RunResult] = []
    total = len(optimizers) * len(seeds)
    for name in optimizers:
        for seed in seeds:
            evaluator = Evaluator(problem, budget)
            t0 = time.perf_counter()
            run_optimizer(name, evaluator, seed, options)
            seconds = time.perf_counter() - t0
            if evaluator.used < budget:
                log.warning("%s seed %d stopped after %d of %d queries", name, seed, evaluator.used, budget)
            curve = anytime_hypervolume(problem, normalizer, evaluator.history, points)
            runs.append(RunResult(name, seed, budget, evaluator.history, seconds, curve))
            if progress:
                progress(runs[-1], len(runs), total)
    b0 = evaluate_free(problem, [EFFICIENTNET_B0])[0]
    first: dict[str, FrontEntry] = {}
    for r in runs:
        for e in r.history:
            first.setdefault(e.arch.id, FrontEntry(e, f"{r.label}@{e.query}"))
    best = front(problem, [f.evaluation for f in first.values()])
    entries = [first[e.arch.id] for e in best]
    comparisons = compare_with_b0(problem, [f.evaluation for f in first.values()], b0)
    return SearchOutcome(problem, normalizer, runs, b0, entries, comparisons, points)
