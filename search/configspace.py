"""The search space as a ConfigSpace ``ConfigurationSpace``, so SMAC/NASLib-style optimizers can use a Benchmark.

Hyperparameters are the 28 Accel-NASBench config keys: ``block{i}_e`` (ordinal 1, 4, 6),
``block{i}_k`` (ordinal 3, 5), ``block{i}_l`` (ordinal 1..3, stage 5: 1..4) and ``block{i}_se``
(categorical False/True); defaults are EfficientNet-B0. :class:`BenchmarkObjective` answers a
``Configuration`` with the predicted objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from accelnas.core import files
from accelnas.core.errors import InvalidArchitectureError
from accelnas.core.space import EFFICIENTNET_B0, Architecture, as_architecture
from accelnas.search.encoding import CHOICES
from accelnas.search.problem import SearchProblem


def configuration_space(seed: int | None = None):
    """The space as a ``ConfigSpace.ConfigurationSpace`` (defaults: EfficientNet-B0)."""
    from ConfigSpace import CategoricalHyperparameter, ConfigurationSpace, OrdinalHyperparameter

    default = EFFICIENTNET_B0.to_config()
    cs = ConfigurationSpace(name="accel-nasbench", seed=seed)
    hyperparameters = []
    for name, values in CHOICES:
        if name.endswith("_se"):
            hyperparameters.append(CategoricalHyperparameter(name, list(values), default_value=default[name]))
        else:
            hyperparameters.append(OrdinalHyperparameter(name, list(values), default_value=default[name]))
    cs.add(hyperparameters)
    return cs


def to_configuration(arch: Architecture | str | Mapping[str, Any], space=None):
    """The ``Configuration`` of an architecture (or its id, or its config)."""
    from ConfigSpace import Configuration

    return Configuration(space or configuration_space(), values=as_architecture(arch).to_config())


def from_configuration(config: Mapping[str, Any]) -> Architecture:
    """The architecture of a ``Configuration`` (or any mapping of the config keys)."""
    try:
        values = dict(config)
    except (TypeError, ValueError):
        raise InvalidArchitectureError(f"invalid configuration {config!r}: not a mapping") from None
    return Architecture.from_config(values)


def write_space(path: str | Path) -> Path:
    """Write the space as ConfigSpace JSON (replaced whole)."""
    path = Path(path)
    with files.replacing(path) as tmp:
        configuration_space().to_json(tmp, indent=2)
    return path


class BenchmarkObjective:
    """``objective(config) -> {objective name: predicted value}`` for a problem; counts its calls.

    A minimizing optimizer such as SMAC takes :meth:`costs` (maximized objectives negated). The
    problem's constraints are not in these values: :meth:`constraints` gives them as numbers that are
    <= 0 where a constraint holds (Optuna's ``constraints_func`` form), :meth:`violation` their total.
    """

    def __init__(self, problem: SearchProblem) -> None:
        self.problem = problem
        self.calls = 0

    def __call__(self, config: Mapping[str, Any], seed: int | None = None) -> dict[str, float]:
        return self.evaluate([config])[0]

    def evaluate(self, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        archs = [from_configuration(c) for c in configs]
        self.calls += len(archs)
        values = self.problem.objective_values(self.problem.predict(archs).mean)
        return [dict(zip(self.problem.names, map(float, row), strict=True)) for row in values]

    def constraints(self, config: Mapping[str, Any]) -> list[float]:
        """One value per constraint of the problem, <= 0 where it holds (relative to its bound)."""
        mean = self.problem.predict([from_configuration(config)]).mean
        return [float(v) for v in self.problem.signed_constraints(mean)[0]]

    def violation(self, config: Mapping[str, Any]) -> float:
        """Total relative violation of the problem's constraints (0 = feasible), as ``search`` judges it."""
        return float(self.problem.violation(self.problem.predict([from_configuration(config)]).mean)[0])

    def costs(self, config: Mapping[str, Any], seed: int | None = None) -> list[float]:
        values = self(config)
        return [-values[o.name] if o.maximize else values[o.name] for o in self.problem.objectives]
