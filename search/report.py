"""Files a search writes (``front.csv``, ``front.json``) and reading a front back.

``front.csv`` has one row per Pareto-optimal architecture: ``id``, the 28 Accel-NASBench config
keys (``block{i}_e/_k/_l/_se``), one column per objective (named as typed, e.g.
``throughput@zcu102``), then ``<objective>_std`` (surrogate spread), the other tracked values
(constraint and reward metrics), ``reward`` for reward searches, and ``found_by``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from accelnas.core import files, jsonio
from accelnas.core.errors import AccelnasError, InvalidArchitectureError
from accelnas.core.space import FEATURE_NAMES, Architecture
from accelnas.search.evaluator import Evaluation
from accelnas.search.pareto import REFERENCE_POINT
from accelnas.search.run import FrontEntry, SearchOutcome


class FrontFileError(AccelnasError):
    """A front file is missing or malformed."""


def _values(outcome: SearchOutcome, e: Evaluation) -> dict[str, Any]:
    problem = outcome.problem
    row: dict[str, Any] = {}
    for o in problem.objectives:
        row[o.name] = float(e.mean[problem.column(o)])
    for o in problem.objectives:
        row[f"{o.name}_std"] = float(e.std[problem.column(o)])
    for o in problem.tracked:
        if o not in problem.objectives:
            row[o.name] = float(e.mean[problem.column(o)])
    if problem.reward is not None:
        row["reward"] = e.reward
    return row


def front_frame(outcome: SearchOutcome) -> pd.DataFrame:
    """The front as a table (the rows of ``front.csv``)."""
    rows = [
        {
            "id": f.evaluation.arch.id,
            **f.evaluation.arch.to_config(),
            **_values(outcome, f.evaluation),
            "found_by": f.found_by,
        }
        for f in outcome.front
    ]
    columns = ["id", *FEATURE_NAMES, *(_values(outcome, outcome.b0)), "found_by"]
    return pd.DataFrame(rows, columns=columns)


def _entry(outcome: SearchOutcome, f: FrontEntry) -> dict[str, Any]:
    return {"id": f.evaluation.arch.id, "values": _values(outcome, f.evaluation), "found_by": f.found_by}


def outcome_dict(outcome: SearchOutcome, **facts: Any) -> dict[str, Any]:
    """JSON-ready account of a search: problem, settings, front, hypervolumes, B0 comparison."""
    problem = outcome.problem
    table = outcome.hypervolume_table()
    best = outcome.best_reward()
    return {
        **facts,
        **problem.describe(),
        "budget": max(r.budget for r in outcome.runs),
        "budget_counts": "unique architectures queried per run (EfficientNet-B0 and the normalization sample are free)",
        "hypervolume": {
            "normalization": outcome.normalizer.describe(problem),
            "reference_point_normalized": REFERENCE_POINT,
            "per_optimizer": {
                name: {str(n): {"mean": m, "std": s, "seeds": k} for n, (m, s, k) in per.items()}
                for name, per in table.items()
            },
        },
        "runs": [
            {
                "optimizer": r.optimizer,
                "seed": r.seed,
                "queries": r.queries,
                "seconds": round(r.seconds, 3),
                "hypervolume": r.hypervolume,
                "anytime_hypervolume": [[n, hv] for n, hv in r.curve],
            }
            for r in outcome.runs
        ],
        "efficientnet_b0": {"id": outcome.b0.arch.id, "values": _values(outcome, outcome.b0)},
        "front": [_entry(outcome, f) for f in outcome.front],
        "best_reward": None if best is None else _entry(outcome, best),
        "b0_comparison": [c.to_dict() for c in outcome.comparisons],
    }


def write_outcome(outcome: SearchOutcome, out_dir: str | Path, **facts: Any) -> tuple[Path, Path]:
    """Write ``front.csv`` and ``front.json`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "front.csv", out / "front.json"
    # both written before either replaces its old file (verify reads them together): a write that fails
    # (a full disk) leaves the last search's pair
    with files.replacing(csv_path) as csv_tmp, files.replacing(json_path) as json_tmp:
        front_frame(outcome).to_csv(csv_tmp, index=False, lineterminator="\n")
        json_tmp.write_text(jsonio.dumps(outcome_dict(outcome, **facts), indent=2), encoding="utf-8")
    return csv_path, json_path


def read_front(path: str | Path) -> tuple[list[Architecture], pd.DataFrame]:
    """Architectures of a front file (``front.csv``, or any CSV with an ``id`` column or the config keys)."""
    path = Path(path)
    if not path.is_file():
        raise FrontFileError(f"front file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise FrontFileError(f"cannot read front file {path}: {type(exc).__name__}: {exc}") from None
    has_config = all(k in frame.columns for k in FEATURE_NAMES)
    if "id" not in frame.columns and not has_config:
        raise FrontFileError(f"{path}: needs an 'id' column or the config columns block0_e ... block6_se")
    if frame.empty:
        raise FrontFileError(f"{path}: no architectures")
    archs: list[Architecture] = []
    rows: dict[str, int] = {}  # arch id -> its row
    for i, row in enumerate(frame.to_dict("records")):
        try:
            arch = (
                Architecture.from_config({k: row[k] for k in FEATURE_NAMES})
                if has_config
                else Architecture.from_string(str(row["id"]))
            )
        except InvalidArchitectureError as exc:
            raise FrontFileError(f"{path}: row {i + 1}: {exc}") from None
        if has_config and "id" in frame.columns and str(row["id"]) != arch.id:
            raise FrontFileError(f"{path}: row {i + 1}: id {row['id']!r} does not match its config ({arch.id})")
        if arch.id in rows:  # measured once, it would count twice in the agreement
            raise FrontFileError(f"{path}: rows {rows[arch.id]} and {i + 1} name one architecture ({arch.id})")
        rows[arch.id] = i + 1
        archs.append(arch)
    return archs, frame
