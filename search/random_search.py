"""Random search: distinct architectures drawn uniformly until the budget is spent."""

from __future__ import annotations

import random

from accelnas.core.space import Architecture, sample_one
from accelnas.search.evaluator import Evaluator

BATCH = 256


def random_search(evaluator: Evaluator, seed: int = 0) -> None:
    """Query uniformly drawn unseen architectures (in batches) until the budget is spent."""
    rng = random.Random(seed)
    while evaluator.remaining > 0:
        batch: dict[str, Architecture] = {}
        want = min(evaluator.remaining, BATCH)
        while len(batch) < want:
            a = sample_one(rng)
            if a.id not in batch and not evaluator.known(a):
                batch[a.id] = a
        evaluator.evaluate(list(batch.values()))
