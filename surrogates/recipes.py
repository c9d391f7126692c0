"""Default surrogate recipes per (target, metric).

The paper's devices get recipes chosen on Accel-NASBench data with repeated random splits
(see docs/surrogates.md); any other target, such as a user's own campaign, uses automatic
selection among the families on a validation split.
"""

from __future__ import annotations

from typing import Any

AUTO: dict[str, Any] = {"family": "auto", "params": None, "ensemble": 1}

RECIPES: dict[tuple[str, str], dict[str, Any]] = {}


def recipe_for(target: str, metric: str) -> dict[str, Any]:
    """The recipe for a pair: {"family", "params", "ensemble"}."""
    return dict(RECIPES.get((target, metric), AUTO))
