"""How found architectures compare with EfficientNet-B0 on accuracy and each device objective."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from accelnas.search.evaluator import Evaluation
from accelnas.search.problem import SearchProblem

PAPER_DEVICES: tuple[str, ...] = ("a100", "3090", "tpuv2", "tpuv3", "zcu102", "vck190")


@dataclass(frozen=True)
class Pick:
    """One architecture that dominates B0, with its gains over B0."""

    arch_id: str
    accuracy: float
    value: float
    accuracy_gain: float  # accuracy points over B0
    value_change_pct: float  # (value / B0's - 1) * 100: positive = more throughput, negative = less latency


@dataclass(frozen=True)
class B0Comparison:
    """Found architectures against EfficientNet-B0 on (accuracy, one device objective)."""

    objective: str
    unit: str
    b0_accuracy: float
    b0_value: float
    dominating: int  # feasible found architectures at least as good on both, better on one
    most_accurate: Pick | None  # the most accurate of them
    best_value: Pick | None  # the fastest of them (highest throughput / lowest latency)
    b0_feasible: bool = True  # False: B0 itself breaks the search's constraints

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        head = (
            f"{self.objective}: {self.dominating} found architectures dominate EfficientNet-B0 "
            f"({self.b0_accuracy:.2f}% / {self.b0_value:.4g} {self.unit})"
        )
        if not self.b0_feasible:
            head += " (EfficientNet-B0 itself breaks the constraints)"
        if self.most_accurate is None or self.best_value is None:
            return head
        return (
            f"{head}; most accurate {_pick(self.most_accurate, self.unit)}; fastest {_pick(self.best_value, self.unit)}"
        )


def _pick(p: Pick, unit: str) -> str:
    return (
        f"{p.arch_id} {p.accuracy:.2f}% ({p.accuracy_gain:+.2f} points), {p.value:.4g} {unit} "
        f"({p.value_change_pct:+.1f}%)"
    )


def compare_with_b0(problem: SearchProblem, evaluations: Sequence[Evaluation], b0: Evaluation) -> list[B0Comparison]:
    """One comparison per throughput/latency objective of a problem that also has an accuracy objective."""
    accuracy = next((o for o in problem.objectives if o.metric == "accuracy"), None)
    if accuracy is None:
        return []
    acc_col = problem.column(accuracy)
    out = []
    for o in problem.objectives:
        if o.metric == "accuracy":
            continue
        col = problem.column(o)
        sign = 1.0 if o.maximize else -1.0
        b0_acc, b0_val = float(b0.mean[acc_col]), float(b0.mean[col])
        better = []
        seen: set[str] = set()
        for e in evaluations:
            if not e.feasible or e.arch.id in seen or e.arch.id == b0.arch.id:
                continue
            seen.add(e.arch.id)
            acc, val = float(e.mean[acc_col]), float(e.mean[col])
            no_worse = acc >= b0_acc and sign * val >= sign * b0_val
            if no_worse and (acc > b0_acc or sign * val > sign * b0_val):
                better.append(Pick(e.arch.id, acc, val, acc - b0_acc, (val / b0_val - 1.0) * 100.0))
        most_accurate = max(better, key=lambda p: (p.accuracy, sign * p.value), default=None)
        best_value = max(better, key=lambda p: (sign * p.value, p.accuracy), default=None)
        out.append(B0Comparison(o.name, problem.unit(o), b0_acc, b0_val, len(better), most_accurate, best_value,
                                b0.feasible))  # fmt: skip
    return out
