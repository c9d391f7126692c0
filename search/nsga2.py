"""NSGA-II (Deb et al. 2002) with pymoo, driven through its ask-and-tell interface.

Architectures are 28 integer choice indices (:mod:`accelnas.search.encoding`); offspring come from
simulated binary crossover and polynomial mutation rounded to integers (pymoo's recipe for discrete
variables). Each generation's offspring are answered by the :class:`~accelnas.search.evaluator.
Evaluator`, so the budget counts unique architectures; the last generation is cut at the budget.
With a reward the search has one objective (the reward); constraints use pymoo's
constraint-domination (feasible first, then smaller violation).
"""

from __future__ import annotations

import numpy as np

from accelnas.search.encoding import CHOICES, UPPER, decode
from accelnas.search.evaluator import Evaluator
from accelnas.search.objectives import SearchSpecError

POPULATION = 50
STALL_LIMIT = 50  # consecutive generations without an unseen architecture: stop early


def check_options(population: int) -> None:
    if population < 4:
        raise SearchSpecError(f"NSGA-II needs a population of at least 4, got {population}")


def nsga2(evaluator: Evaluator, seed: int = 0, *, population: int = POPULATION) -> None:
    """Run NSGA-II until the budget is spent (or generations stop producing unseen architectures)."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator as PymooEvaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.problems.static import StaticProblem
    from pymoo.termination.max_gen import MaximumGenerationTermination

    check_options(population)
    problem = evaluator.problem
    n_obj = 1 if problem.reward is not None else len(problem.objectives)
    space = Problem(
        n_var=len(CHOICES), n_obj=n_obj, n_ieq_constr=len(problem.constraints), xl=0, xu=UPPER.copy(), vtype=int
    )
    algorithm = NSGA2(
        pop_size=population,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    algorithm.setup(space, termination=MaximumGenerationTermination(np.iinfo(np.int32).max), seed=seed, verbose=False)
    stall = 0
    while evaluator.remaining > 0 and stall < STALL_LIMIT:
        offspring = algorithm.ask()
        archs = [decode(x) for x in offspring.get("X")]
        before = evaluator.used
        answers = evaluator.evaluate(archs)
        keep = [i for i, e in enumerate(answers) if e is not None]
        if not keep:
            break
        offspring = offspring[keep]
        mean = np.array([answers[i].mean for i in keep])
        if problem.reward is not None:
            values = {"F": -problem.reward_values(mean)[:, None]}
        else:
            values = {"F": problem.minimization(problem.objective_values(mean))}
        if problem.constraints:
            values["G"] = problem.signed_constraints(mean)
        PymooEvaluator().eval(StaticProblem(space, **values), offspring)
        algorithm.tell(infills=offspring)
        stall = stall + 1 if evaluator.used == before else 0
