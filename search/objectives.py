"""What a search optimizes: objectives, constraints and the MnasNet reward, as users type them.

* An objective is ``metric`` or ``metric@device``: ``accuracy``, ``throughput@zcu102``,
  ``latency@vck190``, ``throughput@cpu/onnxruntime``. Accuracy and throughput are maximized, latency
  is minimized.
* A constraint is ``objective<=bound`` or ``objective>=bound``: ``latency@zcu102<=5``.
* The MnasNet reward (Tan et al. 2019) is ``accuracy * (T / T0) ** w`` for a performance objective
  ``T`` with target ``T0`` (``latency@zcu102=5``). ``w`` is given in the latency convention
  (MnasNet's soft constraint ``w = -0.07``); for a throughput objective its sign flips, so a faster
  model is rewarded in both cases.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from accelnas.core.errors import AccelnasError
from accelnas.core.records import is_real

DIRECTIONS: dict[str, bool] = {"accuracy": True, "throughput": True, "latency": False}  # metric -> maximize
MNASNET_W = -0.07

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CONSTRAINT = re.compile(rf"^\s*(?P<objective>[^<>=\s]+)\s*(?P<op><=|>=)\s*(?P<bound>{_NUMBER})\s*$")
_REWARD = re.compile(rf"^\s*(?P<objective>[^<>=\s]+)\s*=\s*(?P<target>{_NUMBER})\s*$")


class SearchSpecError(AccelnasError):
    """An objective, constraint, reward or option of a search is malformed."""

    exit_code = 2


@dataclass(frozen=True)
class Objective:
    """A metric, optionally on a device (or full ``device/backend`` target) of the benchmark."""

    metric: str
    device: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in DIRECTIONS:
            raise SearchSpecError(f"unknown metric {self.metric!r}: one of {', '.join(DIRECTIONS)}")

    @property
    def name(self) -> str:
        return self.metric if self.device is None else f"{self.metric}@{self.device}"

    @property
    def maximize(self) -> bool:
        return DIRECTIONS[self.metric]

    def __str__(self) -> str:
        return self.name


def parse_objective(text: str) -> Objective:
    """Parse ``metric`` or ``metric@device``."""
    raw = text.strip()
    metric, _, device = raw.partition("@")
    metric = metric.strip().lower()
    device = device.strip()
    if metric not in DIRECTIONS:
        raise SearchSpecError(
            f"unknown objective {text!r}: the metric must be one of {', '.join(DIRECTIONS)} "
            "(e.g. accuracy, throughput@zcu102, latency@vck190)"
        )
    if "@" in raw and not device:
        raise SearchSpecError(f"objective {text!r} names no device after '@'")
    return Objective(metric, device or None)


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> list[Objective]:
    """Parse a comma-separated list (or a list of such strings) of distinct objectives."""
    parts = [p for item in ([text] if isinstance(text, str) else text) for p in item.split(",") if p.strip()]
    if not parts:
        raise SearchSpecError("give at least one objective, e.g. accuracy,throughput@zcu102")
    objectives = [parse_objective(p) for p in parts]
    names = [o.name for o in objectives]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise SearchSpecError(f"objective {duplicate!r} is given twice")
    return objectives


@dataclass(frozen=True)
class Constraint:
    """``objective <= bound`` or ``objective >= bound``."""

    objective: Objective
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise SearchSpecError(f"constraint operator must be '<=' or '>=', got {self.op!r}")
        if not is_real(self.bound) or not math.isfinite(self.bound):
            raise SearchSpecError(f"constraint bound must be a finite number, got {self.bound!r}")

    @property
    def name(self) -> str:
        return f"{self.objective.name}{self.op}{self.bound:g}"

    def violation(self, values: np.ndarray) -> np.ndarray:
        """How far each value is outside the bound, relative to the bound (0 where satisfied)."""
        values = np.asarray(values, dtype=float)
        excess = values - self.bound if self.op == "<=" else self.bound - values
        return np.maximum(excess, 0.0) / max(abs(self.bound), 1e-12)

    def signed(self, values: np.ndarray) -> np.ndarray:
        """pymoo's inequality form: <= 0 where satisfied, relative to the bound."""
        values = np.asarray(values, dtype=float)
        excess = values - self.bound if self.op == "<=" else self.bound - values
        return excess / max(abs(self.bound), 1e-12)


def parse_constraint(text: str) -> Constraint:
    """Parse ``objective<=bound`` or ``objective>=bound``."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise SearchSpecError(
            f"malformed constraint {text!r}: expected OBJECTIVE<=BOUND or OBJECTIVE>=BOUND, e.g. latency@zcu102<=5"
        )
    bound = float(match["bound"])
    if not math.isfinite(bound):
        raise SearchSpecError(f"constraint {text!r}: the bound must be finite")
    return Constraint(parse_objective(match["objective"]), match["op"], bound)


@dataclass(frozen=True)
class MnasReward:
    """``accuracy * (T / T0) ** w`` (MnasNet's soft-constrained reward) for one performance objective."""

    performance: Objective
    target: float
    w: float = MNASNET_W
    accuracy: Objective = Objective("accuracy")

    def __post_init__(self) -> None:
        if self.performance.metric == "accuracy":
            raise SearchSpecError("the reward's performance objective must be a throughput or latency")
        if not (math.isfinite(self.target) and self.target > 0):
            raise SearchSpecError(f"the reward's target T0 must be positive, got {self.target}")
        if not math.isfinite(self.w):
            raise SearchSpecError(f"the reward exponent must be finite, got {self.w}")

    @property
    def exponent(self) -> float:
        """``w`` for latency; ``-w`` for throughput (higher is better there)."""
        return self.w if self.performance.metric == "latency" else -self.w

    @property
    def name(self) -> str:
        return f"{self.accuracy.name}*({self.performance.name}/{self.target:g})^{self.exponent:g}"

    def __call__(self, accuracy: np.ndarray, performance: np.ndarray) -> np.ndarray:
        accuracy = np.asarray(accuracy, dtype=float)
        performance = np.asarray(performance, dtype=float)
        return accuracy * np.power(np.maximum(performance, 1e-12) / self.target, self.exponent)


def parse_reward(text: str, w: float = MNASNET_W) -> MnasReward:
    """Parse ``objective=T0`` (e.g. ``latency@zcu102=5``) into a MnasNet reward with exponent ``w``."""
    match = _REWARD.match(text)
    if not match:
        raise SearchSpecError(f"malformed reward {text!r}: expected OBJECTIVE=TARGET, e.g. latency@zcu102=5")
    return MnasReward(parse_objective(match["objective"]), float(match["target"]), w)
