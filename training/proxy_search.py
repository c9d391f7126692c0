"""Search for a training proxy: the cheapest recipe whose architecture ranking agrees with the reference.

A proxy space is a base recipe and axes of alternative values (``epochs: [1, 2, 4]``,
``data_fraction: [0.25, 1.0]``, ``resolution: [16, [[0, 16], [2, 32]]]``, ...); every combination is
a candidate recipe. A candidate is scored by Kendall τ between its accuracies and the reference
accuracies on the same architectures, and by its measured cost (wall seconds and device-hours per
architecture). Three strategies spend training on candidates differently:

* ``grid`` trains every candidate on every architecture (the paper's procedure);
* ``halving`` (successive halving) scores all candidates on a few architectures, keeps the best
  ``1/eta`` and re-scores them on ``eta`` times more, until the survivors see every architecture;
  "best" ranks candidates with τ ≥ threshold by cost, then the others by τ;
* ``optuna`` runs a multi-objective Optuna study (maximise τ, minimise cost) for a number of trials.

Every strategy reports what its search cost (the sum of the training runs it needed, each counted
once), its cost–τ Pareto front and the cheapest candidate with τ ≥ the threshold.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from accelnas.core.errors import AccelnasError, DatasetError
from accelnas.core.space import Architecture, unique
from accelnas.training.campaign import Evaluation
from accelnas.training.ranking import paired_tau, pareto_front
from accelnas.training.recipe import Recipe, RecipeError, from_dict, load_recipe, read_yaml

log = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("grid", "halving", "optuna")
# "wall": wall-clock seconds (the paper's cost: GPU time); "cpu": process CPU seconds, steadier than wall
# time on a machine shared with other work
COSTS: tuple[str, ...] = ("wall", "cpu")


def cost_of(ev: Evaluation, cost: str = "wall") -> float:
    """Seconds one training run cost under the chosen cost model."""
    if cost not in COSTS:
        raise AccelnasError(f"unknown cost model {cost!r} (known: {', '.join(COSTS)})")
    return ev.cpu_seconds if cost == "cpu" else ev.wall_seconds


_NOT_AXES = ("name", "description")


# -- the space of candidates --------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """A proxy recipe: the base recipe with some fields overridden."""

    name: str
    overrides: tuple[tuple[str, Any], ...]
    recipe: Recipe


def _label(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_label(v) for v in value)
    return str(value)


def _resolution_label(value: Any) -> str:
    """``16@0+32@2`` for a schedule (of ``[start, size]`` or ``{epoch, size}`` entries); an entry that is
    neither is shown as it is, for the recipe check to refuse."""
    if not isinstance(value, (list, tuple)):
        return str(value)
    parts = []
    for item in value:
        if isinstance(item, dict) and set(item) == {"epoch", "size"}:
            item = (item["epoch"], item["size"])
        parts.append(f"{item[1]}@{item[0]}" if isinstance(item, (list, tuple)) and len(item) == 2 else _label(item))
    return "+".join(parts)


def candidate_name(overrides: Sequence[tuple[str, Any]]) -> str:
    parts = []
    for key, value in overrides:
        shown = _resolution_label(value) if key == "resolution" else _label(value)
        parts.append(f"{key}={shown}")
    return ",".join(parts) or "base"


@dataclass(frozen=True)
class ProxySpace:
    """A base recipe and, per field, the values a proxy may take."""

    base: Recipe
    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    def candidates(self) -> list[Candidate]:
        """Every combination of the axes, as validated recipes (invalid combinations are skipped, with
        one warning that counts them)."""
        return list(self._valid)

    @cached_property
    def _valid(self) -> tuple[Candidate, ...]:
        names = [k for k, _ in self.axes]
        out = []
        skipped: list[str] = []
        seen: dict[str, str] = {}  # recipe key -> the candidate that has it
        for values in itertools.product(*(v for _, v in self.axes)):
            overrides = tuple(zip(names, values, strict=True))
            name = candidate_name(overrides)
            changes = {k: _plain(v) for k, v in overrides}
            described = f"{self.base.name} with " + ", ".join(f"{k}={v}" for k, v in changes.items())
            fields = {**self.base.to_dict(), **changes, "name": name, "description": described}
            try:
                recipe = from_dict(fields, where=f"candidate {name}")
            except RecipeError as exc:
                log.debug("skipping candidate: %s", exc)
                skipped.append(str(exc))
                continue
            if recipe.key() in seen:
                raise RecipeError(f"proxy candidates {seen[recipe.key()]} and {name} are the same recipe: "
                                  "list each value of an axis once")  # fmt: skip
            seen[recipe.key()] = name
            out.append(Candidate(name, overrides, recipe))
        if not out:
            raise RecipeError(f"the proxy space has no valid candidate (e.g. {skipped[0]})" if skipped else
                              "the proxy space has no valid candidate")  # fmt: skip
        if skipped:
            total = self.size()
            log.warning("%d of %d proxy candidates are invalid and skipped, e.g. %s", len(skipped), total, skipped[0])
        return tuple(out)

    def size(self) -> int:
        return math.prod(len(v) for _, v in self.axes)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def space_from_dict(data: Any, where: str = "proxy space", folder: Path | None = None) -> ProxySpace:
    """``{base: <recipe name, path or mapping>, axes: {field: [values...]}}``; a relative ``base``
    path is looked up in ``folder`` (the space file's) first."""
    if not isinstance(data, dict) or "axes" not in data or "base" not in data:
        raise RecipeError(f"{where}: a proxy space is a mapping with 'base' (the recipe it varies) and 'axes'")
    unknown = sorted(set(data) - {"base", "axes", "description"})
    if unknown:
        raise RecipeError(f"{where}: unknown key {unknown[0]!r} (known: axes, base, description)")
    base_spec = data["base"]
    if isinstance(base_spec, str) and folder is not None and (folder / base_spec).is_file():
        base_spec = str(folder / base_spec)
    base = from_dict(base_spec, where=f"{where}: base") if isinstance(base_spec, dict) else load_recipe(str(base_spec))
    axes = data["axes"]
    if not isinstance(axes, dict) or not axes:
        raise RecipeError(f"{where}: 'axes' must map recipe fields to lists of values")
    fields = set(base.to_dict()) - set(_NOT_AXES)
    out = []
    for key, values in axes.items():
        if key not in fields:
            raise RecipeError(f"{where}: axis {key!r} is not a recipe field (fields: {', '.join(sorted(fields))})")
        if not isinstance(values, list) or not values:
            raise RecipeError(f"{where}: axis {key!r} needs a non-empty list of values")
        out.append((key, tuple(_frozen(v) for v in values)))
    return ProxySpace(base, tuple(out))


def load_space(source: str | Path) -> ProxySpace:
    """A proxy space from a YAML file or a built-in name (e.g. ``digits-proxy-space``)."""
    data, where = read_yaml(source, kind="proxy space")
    path = Path(source)
    return space_from_dict(data, where, folder=path.parent if path.is_file() else None)


# -- evaluating recipes -------------------------------------------------------------------------------
class RecipeEvaluator(Protocol):
    """Accuracies and costs of architectures trained under a recipe (cached by whoever implements it).

    Runs that failed may be returned too, with ``failed`` set: they are not scored, but their time
    counts in the search's cost.
    """

    def evaluate(self, recipe: Recipe, archs: Sequence[Architecture]) -> dict[str, Evaluation]: ...


class TrainingEvaluator:
    """Trains through :func:`~accelnas.training.campaign.run_accuracy_campaign`, so results are stored and reused.

    A run that fails is returned as failed (with what it cost) and not tried again by this evaluator:
    the next strategy that needs it gets the same failure rather than paying for it twice. A new
    evaluator (the next ``proxy-search``) retries it.
    """

    def __init__(self, data, store, *, ctx=None, workers: int = 0, echo: Callable[[str], None] | None = None) -> None:
        self.data = data
        self.store = store
        self.ctx = ctx
        self.workers = workers
        self.echo = echo
        self.failed: dict[tuple[str, str], Evaluation] = {}

    def evaluate(self, recipe: Recipe, archs: Sequence[Architecture]) -> dict[str, Evaluation]:
        from accelnas.training.campaign import ProgressLines, run_accuracy_campaign

        key = recipe.key()
        known = {a.id: self.failed[key, a.id] for a in archs if (key, a.id) in self.failed}
        todo = [a for a in archs if a.id not in known]
        if not todo:
            return known
        progress = ProgressLines(self.echo, recipe.name) if self.echo else None
        report = run_accuracy_campaign(
            todo, recipe, self.data, self.store, ctx=self.ctx, workers=self.workers, progress=progress
        )
        for arch_id, ev in report.failures.items():
            self.failed[key, arch_id] = dataclasses.replace(ev, cached=True)
        return {**report.evaluations, **report.failures, **known}


class TableEvaluator:
    """Evaluations known in advance: ``{recipe key: {arch id: Evaluation}}`` (e.g. read from files)."""

    def __init__(self, table: Mapping[str, Mapping[str, Evaluation]]) -> None:
        self.table = table

    def evaluate(self, recipe: Recipe, archs: Sequence[Architecture]) -> dict[str, Evaluation]:
        known = self.table.get(recipe.key(), {})
        return {a.id: known[a.id] for a in archs if a.id in known}


@dataclass
class Ledger:
    """The training runs one strategy asked for, each counted once."""

    runs: dict[tuple[str, str], Evaluation] = field(default_factory=dict)
    cost: str = "wall"

    def add(self, recipe: Recipe, evaluations: Mapping[str, Evaluation]) -> None:
        for arch_id, ev in evaluations.items():
            self.runs.setdefault((recipe.key(), arch_id), ev)

    @property
    def trainings(self) -> int:
        """Runs, including those that failed."""
        return len(self.runs)

    @property
    def failed(self) -> int:
        return sum(ev.failed for ev in self.runs.values())

    @property
    def seconds(self) -> float:
        return float(sum(cost_of(ev, self.cost) for ev in self.runs.values()))

    @property
    def device_hours(self) -> float:
        return float(sum(ev.device_hours for ev in self.runs.values()))


# -- scores and results -------------------------------------------------------------------------------
@dataclass
class CandidateScore:
    name: str
    overrides: dict[str, Any]
    recipe_key: str
    tau: float
    n_archs: int
    seconds_per_arch: float
    device_hours_per_arch: float
    mean_top1: float
    rung: int = 0

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name, "tau": self.tau, "n_archs": self.n_archs, "seconds_per_arch": self.seconds_per_arch,
            "device_hours_per_arch": self.device_hours_per_arch, "mean_top1": self.mean_top1, "rung": self.rung,
            "recipe_key": self.recipe_key, "overrides": json.dumps(_plain_dict(self.overrides)),
        }  # fmt: skip


def _plain_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in d.items()}


def score(candidate: Candidate, reference: Mapping[str, float], evaluations: Mapping[str, Evaluation],
          rung: int = 0, cost: str = "wall") -> CandidateScore:  # fmt: skip
    """τ against the reference and mean cost over the architectures evaluated."""
    tau, n = paired_tau(reference, {k: v.top1 for k, v in evaluations.items()})
    evs = [evaluations[k] for k in evaluations if k in reference]
    return CandidateScore(
        candidate.name, dict(candidate.overrides), candidate.recipe.key(), tau, n,
        float(np.mean([cost_of(e, cost) for e in evs])) if evs else float("nan"),
        float(np.mean([e.device_hours for e in evs])) if evs else float("nan"),
        float(np.mean([e.top1 for e in evs])) if evs else float("nan"), rung,
    )  # fmt: skip


@dataclass
class SearchResult:
    """What one strategy found and what finding it cost."""

    strategy: str
    threshold: float
    n_archs: int
    scores: list[CandidateScore]  # every score computed (all rungs for halving)
    final: list[CandidateScore]  # scores on every architecture
    ledger: Ledger
    chosen: CandidateScore | None = None
    front: list[CandidateScore] = field(default_factory=list)

    def finish(self) -> SearchResult:
        """Front and choice among the candidates with results on as many architectures as any: one whose
        runs failed on some has a τ over fewer architectures, which does not compare with the others'."""
        covered = max((s.n_archs for s in self.final), default=0)  # an architecture no recipe trained drops out
        complete = [s for s in self.final if s.n_archs == covered]
        for s in self.final:
            if s.n_archs < covered:
                log.warning("candidate %s has results on %d of the %d architectures other candidates trained "
                            "(its other runs failed); it is neither chosen nor on the front",
                            s.name, s.n_archs, covered)  # fmt: skip
        self.front = [complete[i] for i in pareto_front([s.seconds_per_arch for s in complete],
                                                         [s.tau for s in complete])]  # fmt: skip
        feasible = [s for s in complete if math.isfinite(s.tau) and s.tau >= self.threshold]
        self.chosen = min(feasible, key=lambda s: (s.seconds_per_arch, -s.tau)) if feasible else None
        return self

    def frame(self) -> pd.DataFrame:
        front = {s.recipe_key for s in self.front}
        rows = []
        for s in self.scores:
            full = any(s is f for f in self.final)
            rows.append({"strategy": self.strategy, **s.row(), "full": full,
                         "pareto": full and s.recipe_key in front,
                         "chosen": self.chosen is not None and s is self.chosen})  # fmt: skip
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        c = self.chosen
        return {
            "strategy": self.strategy,
            "candidates_scored": len({s.recipe_key for s in self.scores}),
            "trainings": self.ledger.trainings,
            "failed_trainings": self.ledger.failed,
            "cost": self.ledger.cost,
            "search_seconds": self.ledger.seconds,
            "search_device_hours": self.ledger.device_hours,
            "chosen": c.name if c else None,
            "chosen_tau": c.tau if c else float("nan"),
            "chosen_seconds_per_arch": c.seconds_per_arch if c else float("nan"),
        }


def _evaluate(evaluator: RecipeEvaluator, ledger: Ledger, cand: Candidate, archs: Sequence[Architecture]):
    """The candidate's successful runs; every run, failed ones too, goes into the strategy's cost."""
    evs = evaluator.evaluate(cand.recipe, archs)
    ledger.add(cand.recipe, evs)
    return {arch_id: ev for arch_id, ev in evs.items() if not ev.failed}


def _check(archs: Sequence[Architecture], reference: Mapping[str, float]) -> list[Architecture]:
    usable = unique(a for a in archs if a.id in reference)
    if len(usable) < 3:
        raise AccelnasError(f"proxy search needs reference accuracies of >= 3 architectures, have {len(usable)}")
    return usable


def grid_search(candidates: Sequence[Candidate], archs: Sequence[Architecture], reference: Mapping[str, float],
                evaluator: RecipeEvaluator, threshold: float, *, cost: str = "wall") -> SearchResult:  # fmt: skip
    """Every candidate on every architecture."""
    archs = _check(archs, reference)
    ledger = Ledger(cost=cost)
    scores = [score(c, reference, _evaluate(evaluator, ledger, c, archs), cost=cost) for c in candidates]
    return SearchResult("grid", threshold, len(archs), scores, list(scores), ledger).finish()


def _halving_key(s: CandidateScore, threshold: float, size: int) -> tuple:
    """Rank of a candidate in a rung: τ ≥ threshold by cost, then by τ; runs that failed rank it last."""
    tau = s.tau if math.isfinite(s.tau) else -2.0
    if s.n_archs < size:
        return (2, -s.n_archs, -tau)
    return (0, s.seconds_per_arch, -tau) if tau >= threshold else (1, -tau, s.seconds_per_arch)


def successive_halving(candidates: Sequence[Candidate], archs: Sequence[Architecture],
                       reference: Mapping[str, float], evaluator: RecipeEvaluator, threshold: float, *,
                       eta: int = 3, min_archs: int = 4, seed: int = 0,
                       cost: str = "wall") -> SearchResult:  # fmt: skip
    """Score all candidates on a few architectures, keep the best 1/eta, grow the architecture set by eta."""
    if eta < 2:
        raise AccelnasError("successive halving needs eta >= 2")
    archs = _check(archs, reference)
    order = list(archs)
    random.Random(seed).shuffle(order)
    n = len(order)
    rungs = max(0, math.floor(math.log(len(candidates), eta) + 1e-9))
    while rungs > 0 and math.ceil(n / eta**rungs) < min(min_archs, n):
        rungs -= 1
    ledger = Ledger(cost=cost)
    alive = list(candidates)
    scores: list[CandidateScore] = []
    final: list[CandidateScore] = []
    for rung in range(rungs + 1):
        size = n if rung == rungs else max(min(min_archs, n), math.ceil(n / eta ** (rungs - rung)))
        subset = order[:size]  # nested prefixes: earlier trainings are reused
        rung_scores = [score(c, reference, _evaluate(evaluator, ledger, c, subset), rung, cost) for c in alive]
        scores += rung_scores
        log.info("halving rung %d: %d candidates on %d architectures", rung, len(alive), size)
        if rung == rungs:
            final = rung_scores
            break
        keep = max(1, math.ceil(len(alive) / eta))
        ranked = sorted(zip(rung_scores, alive, strict=True), key=lambda p: _halving_key(p[0], threshold, size))
        alive = [c for _, c in ranked[:keep]]
    return SearchResult("halving", threshold, n, scores, final, ledger).finish()


def optuna_search(space: ProxySpace, archs: Sequence[Architecture], reference: Mapping[str, float],
                  evaluator: RecipeEvaluator, threshold: float, *, trials: int = 10,
                  seed: int = 0, cost: str = "wall") -> SearchResult:  # fmt: skip
    """A multi-objective Optuna study over the axes (maximise τ, minimise seconds per architecture)."""
    import optuna

    archs = _check(archs, reference)
    by_name = {c.name: c for c in space.candidates()}
    choices = {k: list(range(len(v))) for k, v in space.axes}
    ledger = Ledger(cost=cost)
    scores: dict[str, CandidateScore] = {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(5, trials // 2)))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        overrides = tuple((k, dict(space.axes)[k][trial.suggest_categorical(k, choices[k])]) for k in choices)
        cand = by_name.get(candidate_name(overrides))
        if cand is None:
            raise optuna.TrialPruned()  # an invalid combination of the axes
        if cand.name not in scores:
            scores[cand.name] = score(cand, reference, _evaluate(evaluator, ledger, cand, archs), cost=cost)
        s = scores[cand.name]
        return (s.tau if math.isfinite(s.tau) else -1.0), s.seconds_per_arch

    study.optimize(objective, n_trials=trials)
    final = list(scores.values())
    return SearchResult("optuna", threshold, len(archs), final, final, ledger).finish()


def run_strategies(strategies: Sequence[str], space: ProxySpace, archs: Sequence[Architecture],
                   reference: Mapping[str, float], evaluator: RecipeEvaluator, threshold: float, *,
                   eta: int = 3, min_archs: int = 4, trials: int | None = None,
                   seed: int = 0, cost: str = "wall") -> list[SearchResult]:  # fmt: skip
    """Run the named strategies on the same space, architectures and reference."""
    cost_of(Evaluation("", 0.0, 0.0, 0.0, 0.0), cost)  # validates the cost model name
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise AccelnasError(f"unknown strategy {unknown[0]!r} (known: {', '.join(STRATEGIES)})")
    candidates = space.candidates()
    out = []
    for strategy in strategies:
        if strategy == "grid":
            out.append(grid_search(candidates, archs, reference, evaluator, threshold, cost=cost))
        elif strategy == "halving":
            out.append(successive_halving(candidates, archs, reference, evaluator, threshold, eta=eta,
                                          min_archs=min_archs, seed=seed, cost=cost))  # fmt: skip
        else:
            n = trials or max(3, len(candidates) // 2)
            out.append(optuna_search(space, archs, reference, evaluator, threshold, trials=n, seed=seed, cost=cost))
    return out


def comparison(results: Sequence[SearchResult], reference_cost: Ledger | None = None) -> pd.DataFrame:
    """One row per strategy: what its search cost and what it picked."""
    rows = [r.summary() for r in results]
    grid = next((r for r in results if r.strategy == "grid"), None)
    for row in rows:
        if grid is not None and grid.ledger.seconds > 0:
            row["cost_vs_grid"] = row["search_seconds"] / grid.ledger.seconds
            row["same_choice_as_grid"] = (grid.chosen.name if grid.chosen else None) == row["chosen"]
    frame = pd.DataFrame(rows)
    if reference_cost is not None:
        frame.attrs["reference_seconds"] = reference_cost.seconds
    return frame


# -- reference accuracies from files ------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """Reference top-1 by architecture id, read from ``path``; ``target`` is the dataset target of a
    dataset export (``train/imagenet``, ``imagenet/anb``), None for a plain CSV."""

    path: Path
    accuracies: dict[str, float]
    target: str | None = None

    def check_dataset(self, target: str) -> None:
        """Warn when the reference was measured on another dataset than ``target``, the proxies' one: a
        proxy may be trained on other data on purpose (a subset folder, smaller images, Accel-NASBench's
        ``imagenet/anb`` against ``train/imagenet``), but τ then compares rankings across datasets."""
        if self.target is not None and self.target != target:
            log.warning("%s holds accuracies on %s, but the proxies train on %s: τ compares rankings on the two",
                        self.path, self.target, target)  # fmt: skip


def read_reference(path: str | Path) -> Reference:
    """Reference top-1 by architecture id from a dataset export (metric ``accuracy``, of one target and
    one settings key) or a CSV/Parquet with ``arch_id`` and one of ``accuracy``, ``top1`` or ``value``."""
    from accelnas.core import dataset

    path = Path(path)
    frame = dataset.read_table(path, "reference")
    target = None
    if "metric" in frame.columns:
        frame = dataset.validate(frame, str(path))
        frame = frame[frame["metric"] == "accuracy"]
        if frame.empty:
            raise DatasetError(f"{path}: no accuracy rows")
        targets = sorted(frame["target"].astype(str).unique())
        if len(targets) > 1:
            raise DatasetError(f"{path}: accuracy rows of {len(targets)} datasets ({', '.join(targets)}); keep one")
        target = targets[0]
        if "settings_key" in frame.columns and frame["settings_key"].nunique() > 1:
            raise DatasetError(f"{path}: accuracy rows of {frame['settings_key'].nunique()} recipes; keep one")
        column = "value"
    else:
        column = next((c for c in ("accuracy", "top1", "value") if c in frame.columns), None)
        if "arch_id" not in frame.columns or column is None:
            raise DatasetError(f"{path}: needs an arch_id column and one of accuracy, top1, value")
    out = {}
    for i, (arch_id, value) in enumerate(zip(frame["arch_id"], frame[column], strict=True)):
        try:
            arch = Architecture.from_string(str(arch_id))
            v = float(value)
        except (AccelnasError, ValueError) as exc:
            raise DatasetError(f"{path}: row {i}: {exc}") from None
        if not math.isfinite(v):
            raise DatasetError(f"{path}: row {i}: accuracy {value!r} is not a finite number")
        if arch.id in out:
            raise DatasetError(f"{path}: row {i}: architecture {arch.id} has an accuracy in an earlier row")
        out[arch.id] = v
    return Reference(path, out, target)
