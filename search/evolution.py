"""Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image Classifier
Architecture Search"): tournament selection on a sample of the population, one mutation per child,
and the oldest member removed each step.
"""

from __future__ import annotations

import random
from collections import deque

from accelnas.core.space import Architecture, sample_one
from accelnas.search.encoding import CHOICES, decode, encode
from accelnas.search.evaluator import Evaluation, Evaluator
from accelnas.search.fitness import Fitness
from accelnas.search.objectives import SearchSpecError

POPULATION = 100
BATCH = 1
STALL_LIMIT = 2000  # consecutive children that were all queried before: stop early


def mutate(arch: Architecture, rng: random.Random) -> Architecture:
    """Change one choice (expansion, kernel, layers or squeeze-excite of one stage) to another value."""
    indices = encode(arch)
    position = rng.randrange(len(CHOICES))
    indices[position] = rng.choice([i for i in range(len(CHOICES[position][1])) if i != indices[position]])
    return decode(indices)


def check_options(population: int, sample_size: int | None, batch: int) -> int:
    """Validate the options; return the tournament sample size."""
    sample_size = max(2, population // 4) if sample_size is None else sample_size
    if population < 2 or not 1 <= sample_size <= population or batch < 1:
        raise SearchSpecError(
            f"evolution needs population >= 2, 1 <= sample size <= population and batch >= 1 "
            f"(got population {population}, sample size {sample_size}, batch {batch})"
        )
    return sample_size


def regularized_evolution(
    evaluator: Evaluator,
    seed: int = 0,
    *,
    population: int = POPULATION,
    sample_size: int | None = None,
    batch: int = BATCH,
) -> None:
    """Run aging evolution until the budget is spent (or no unseen child appears for a long while).

    Each step breeds ``batch`` children, each from its own tournament on the current population, queries
    them together, then adds them and removes as many of the oldest members: the synchronous form of
    Real et al.'s parallel workers. ``batch=1`` is the strictly sequential algorithm. The tournament
    sample defaults to a quarter of the population (25 of 100, as Real et al.).
    """
    sample_size = check_options(population, sample_size, batch)
    rng = random.Random(seed)
    fitness = Fitness(evaluator.problem, rng)
    members: deque[Evaluation] = deque()
    initial: dict[str, Architecture] = {}
    while len(initial) < min(population, evaluator.remaining):
        a = sample_one(rng)
        initial.setdefault(a.id, a)
    first = [e for e in evaluator.evaluate(list(initial.values())) if e is not None]
    fitness.observe(first)
    members.extend(first)
    stall = 0
    while evaluator.remaining > 0 and stall < STALL_LIMIT and members:
        pool = list(members)
        children = []
        for _ in range(batch):
            candidates = rng.sample(pool, min(sample_size, len(pool)))
            weights = fitness.draw_weights()
            parent = max(candidates, key=lambda e: fitness.key(e, weights))
            children.append(mutate(parent.arch, rng))
        before = evaluator.used
        answers = [e for e in evaluator.evaluate(children) if e is not None]
        fitness.observe(evaluator.history[before:])
        stall = stall + len(children) if evaluator.used == before else 0
        for child in answers:
            members.append(child)
            if len(members) > population:
                members.popleft()
