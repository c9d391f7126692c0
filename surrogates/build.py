"""Build the surrogates of many (target, metric) pairs of a dataset into one benchmark directory.

Layout: ``OUT/<device>__<backend>/<metric>/`` per surrogate (``surrogate.json``, model files,
``predicted_vs_true.png``, ``drift.png`` where drift was corrected) and ``OUT/benchmark.json``,
the index :class:`~accelnas.surrogates.benchmark.Benchmark` reads (targets, metrics, units, held-out
fidelity, dataset facts).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from accelnas.core import files, jsonio
from accelnas.core.dataset import check_file_stems, file_stem
from accelnas.core.errors import DatasetError
from accelnas.surrogates import artifact
from accelnas.surrogates.drift import check_estimable
from accelnas.surrogates.fit import fit_surrogate, fittable
from accelnas.surrogates.models import family_name
from accelnas.surrogates.plots import ScatterPanel, drift_plot, predicted_vs_measured
from accelnas.surrogates.recipes import fit_options, recipe_for
from accelnas.surrogates.selection import check_selectable, held_out, split

INDEX_FILE = "benchmark.json"
INDEX_FORMAT = "accelnas-benchmark"
INDEX_VERSION = 1
METADATA = artifact.METADATA_FILE

log = logging.getLogger(__name__)


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (target, metric) pairs present in ``frame``, sorted."""
    return sorted({(str(t), str(m)) for t, m in zip(frame["target"], frame["metric"], strict=True)})


def build_all(
    frame: pd.DataFrame,
    out_dir: str | Path,
    *,
    targets: list[tuple[str, str]] | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    ensemble: int | None = None,
    refit_all: bool = True,
    family: str | None = None,
    drift: str | None = None,
    tune_seconds: float = 0.0,
    source: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
    starting: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit, evaluate on held-out architectures, save and plot every pair; write the index.

    ``echo`` gets one line per pair built, ``starting`` (progress) one as each pair starts.
    ``family``, ``ensemble`` and ``drift`` override the recipes when given.
    With ``tune_seconds`` the recipe's family gets an Optuna search of its hyperparameters on a
    validation split of the training rows (never the held-out ones) for that long per target.
    """
    out = Path(out_dir)
    entries = []
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    build = {"source": source or {}, "test_fraction": test_fraction, "seed": seed,
             "fitted_on": "all" if refit_all else "train", "created": created}  # fmt: skip
    start = time.perf_counter()
    todo = targets or pairs(frame)
    check_file_stems(target for target, _ in todo)
    for target, metric in todo:  # refuse a pair that cannot be fitted before anything is written
        part = fittable(frame, target, metric)
        rows = len(part)
        if (family or recipe_for(target, metric)["family"]) == "auto":
            check_selectable(rows - held_out(rows, test_fraction))
        if (drift or recipe_for(target, metric)["drift"]) == "sequence":
            train, _ = split(rows, test_fraction, seed)  # the rows fit_surrogate estimates drift on first
            sequence = part["sequence"].to_numpy()[train] if "sequence" in part.columns else None
            try:
                check_estimable(part["value"].to_numpy(float)[train], sequence)
            except DatasetError as exc:
                raise DatasetError(f"{target}:{metric}: {exc}") from None
    check_earlier_index(out)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {}
    for i, (target, metric) in enumerate(todo, 1):
        recipe = recipe_for(target, metric)
        if family is not None:
            recipe = recipe | {"family": family, "params": {}}
        if ensemble is not None:
            recipe = recipe | {"ensemble": ensemble}
        if drift is not None:
            recipe = recipe | {"drift": drift}
        if starting is not None:
            how = f"{recipe['family']}" + (f" x{recipe['ensemble']}" if recipe.get("ensemble", 1) > 1 else "")
            starting(f"[{i}/{len(todo)}] {target} {metric}: fitting ({how}) ...")
        t0 = time.perf_counter()
        if tune_seconds > 0:
            recipe = _tuned(frame, target, metric, recipe, tune_seconds, test_fraction, seed)
        result = fit_surrogate(
            frame,
            target,
            metric,
            test_fraction=test_fraction,
            seed=seed,
            refit_all=refit_all,
            **fit_options(recipe),
        )
        where = out / file_stem(target) / metric
        artifact.save(result.artifact, where)
        m = result.artifact.metrics["test"]
        predicted_vs_measured(
            [
                ScatterPanel(
                    f"{target} {metric}",
                    result.test_true,
                    result.test_pred,
                    result.artifact.unit or "",
                    m["kendall_tau"],
                    m["r2"],
                )
            ],
            where / "predicted_vs_true.png",
        )
        drift_plot(result.drift, f"{target} {metric}", where / "drift.png")
        seconds = time.perf_counter() - t0
        chosen = family_name(result.artifact.model)
        entries.append({
            "recipe": {k: v for k, v in fit_options(recipe).items() if k != "ensemble"},
            "target": target, "metric": metric, "unit": result.artifact.unit,
            "path": str(where.relative_to(out)), "family": chosen, "ensemble": recipe.get("ensemble", 1),
            "test": m, "n_train": result.artifact.metrics["n_train"], "rows": result.artifact.dataset["rows"],
            "drift": result.artifact.metrics["drift"],
            "seconds": round(seconds, 1),
        } | build)  # fmt: skip
        # the index follows every saved surrogate, so a build stopped partway leaves a usable benchmark
        index = _write_index(out, entries, created, time.perf_counter() - start)
        found = result.artifact.metrics["drift"]
        note = f"  drift corrected: ±{found['spread_pct']:.1f}%" if found else ""
        echo(f"[{i}/{len(todo)}] {target:<16} {metric:<10} {chosen:<9} held-out n={m['n']:<5} "
             f"τ={m['kendall_tau']:.4f}  R²={m['r2']:.4f}  ({seconds:.0f}s){note}")  # fmt: skip
    return index


def check_earlier_index(out: Path) -> None:
    """Refuse, before anything is written, an ``OUT/benchmark.json`` that the index written after each
    surrogate would replace without keeping its entries: another program's file, a damaged index or
    one of a newer format."""
    from accelnas.core.errors import SurrogateError
    from accelnas.surrogates.benchmark import read_index

    index = out / INDEX_FILE
    if not index.exists() and not index.is_symlink():
        return
    try:
        if not index.is_file():
            raise SurrogateError(f"{index} is not a file")
        read_index(index)
    except SurrogateError as exc:
        reason = f"{exc}; choose another directory or remove {INDEX_FILE}"
        raise SurrogateError(f"cannot build into {out}: {reason}") from None


def _write_index(out: Path, entries: list[dict[str, Any]], created: str, seconds: float) -> dict[str, Any]:
    """Write ``benchmark.json``: the entries already there and not rebuilt (read now, so a build of other
    targets into the same directory meanwhile keeps its own), then ``entries``; replaced atomically."""
    with _index_lock(out):
        return _merge_and_replace_index(out, entries, created, seconds)


@contextmanager
def _index_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.benchmark.json.lock`` (where the platform has ``fcntl``): one index writer at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the replace below is still atomic
        yield
        return
    with open(out / f".{INDEX_FILE}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _merge_and_replace_index(out: Path, entries: list[dict[str, Any]], created: str, seconds: float) -> dict[str, Any]:
    built = {(e["target"], e["metric"]) for e in entries}
    entries = [e for e in _earlier_entries(out) if (e["target"], e["metric"]) not in built] + entries
    index = {
        "format": INDEX_FORMAT,
        "format_version": INDEX_VERSION,
        "created": created,
        # each entry records its own build; a setting is repeated here only where all entries share it
        **{key: _shared(entries, key) for key in BUILD_KEYS},
        "build_seconds": round(seconds, 1),
        "surrogates": entries,
    }
    files.write_text(out / INDEX_FILE, jsonio.dumps(index, indent=2) + "\n")  # its own temporary name per writer
    return index


BUILD_KEYS = ("source", "test_fraction", "seed", "fitted_on")


def _shared(entries: list[dict[str, Any]], key: str) -> Any:
    """The value of ``key`` common to every entry, or None where entries differ."""
    values = {json.dumps(e.get(key), sort_keys=True, default=str) for e in entries}
    return entries[0].get(key) if len(values) == 1 else None


def _earlier_entries(out: Path) -> list[dict[str, Any]]:
    """Entries of an index already in ``out`` whose surrogates are still there (a rebuild of some
    targets keeps the others queryable), with their build settings; nothing without a readable index."""
    try:
        index = json.loads((out / INDEX_FILE).read_text())
        entries = index["surrogates"]
        kept = [  # an entry without its pair or folder is left out, not the whole index
            e
            for e in entries
            if isinstance(e, dict)
            and all(isinstance(e.get(k), str) and e[k] for k in ("target", "metric", "path"))
            and (out / e["path"] / METADATA).is_file()
        ]
        # indexes written before entries carried their build settings kept them at the top level only
        return [{key: index.get(key) for key in (*BUILD_KEYS, "created")} | e for e in kept]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _tuned(
    frame: pd.DataFrame,
    target: str,
    metric: str,
    recipe: dict[str, Any],
    seconds: float,
    test_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """The recipe with hyperparameters tuned on the rows :func:`fit_surrogate` will train on."""
    from accelnas.core.dataset import select
    from accelnas.surrogates.fit import architectures
    from accelnas.surrogates.selection import SPACES, select_family, tune

    part = select(frame, target, metric)
    train, _ = split(len(part), test_fraction, seed)  # the same split fit_surrogate makes
    archs = architectures(part)
    train_archs, y = [archs[i] for i in train], part["value"].to_numpy(float)[train]
    family, params = recipe["family"], dict(recipe.get("params") or {})
    if family == "auto":
        chosen = select_family(train_archs, y, seed=seed)
        family, params = chosen.family, chosen.params
    if family not in SPACES:
        log.warning("%s %s: no hyperparameter search for the %s family; --tune-seconds leaves its recipe as it is",
                    target, metric, family)  # fmt: skip
        return recipe | {"family": family, "params": params}
    fixed = {k: v for k, v in params.items() if k not in SPACES[family]}
    best = tune(family, train_archs, y, space=SPACES[family], fixed=fixed, budget_seconds=seconds, seed=seed)
    return recipe | {"family": family, "params": best.params}
