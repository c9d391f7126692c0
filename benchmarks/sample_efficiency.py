"""How many measured architectures a surrogate needs, and whether choosing them helps.

    python benchmarks/sample_efficiency.py [--source ARCHIVE_OR_DIR] [--sizes 25,50,100,200,500,1000,all]
        [--targets accuracy,throughput_a100,...] [--seeds 3] [--strategies random,space-filling,active]
        [--png curves.png] [--json curves.json]

For each target, a fixed 20% of the Accel-NASBench architectures is the test set. From the rest,
``n`` architectures are chosen (random, space-filling, or active: a space-filling quarter, then
rounds of the architectures a seed ensemble disagrees most on, exactly as ``accelnas collect
--selection active`` chooses them) and the target's default surrogate is fitted on them; Kendall τ
and R² on the test set are printed as mean ± sample standard deviation (ddof=1) over seeds. ``all``
is one fit on the whole pool, in the first strategy's column ("± -": no spread from one seed); a
size larger than the pool is skipped with a note. ``--png`` draws τ against ``n`` per target and
strategy (mean, sample std as bars, the whole pool as a dashed line); ``--json`` writes the table's
figures.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from accelnas.core import jsonio
from accelnas.core.cli_options import at_least_one, output_figure, output_file, run_script, write_output
from accelnas.core.space import FEATURE_NAMES, Architecture
from accelnas.surrogates.active import active_rounds, space_filling
from accelnas.surrogates.anb_dataset import ACCURACY_TARGET, ANB_URL, PERF_KEYS, anb_target, import_anb
from accelnas.surrogates.fit import fit_model
from accelnas.surrogates.metrics import regression_metrics
from accelnas.surrogates.models import make
from accelnas.surrogates.recipes import fit_options, recipe_for
from accelnas.surrogates.selection import MIN_SELECTION_ROWS, select_family

SMALL = 500
TARGETS = {"accuracy": (ACCURACY_TARGET, "accuracy")} | {
    key: (anb_target(device), metric) for key, (device, metric) in PERF_KEYS.items()
}


def fit_default(target: str, metric: str, archs, y, std, sequence, seed: int):
    """The default build: the target's recipe (noise weighting and drift correction included) on large
    data, automatic selection below 500 architectures."""
    recipe = recipe_for(target, metric)
    if recipe["family"] == "auto" or len(archs) < SMALL:
        chosen = select_family(archs, y, seed=seed)
        return make(chosen.family, seed=seed, **chosen.params).fit(archs, y)
    std, sequence = (np.asarray(v, dtype=float) for v in (std, sequence))
    return fit_model(archs, np.asarray(y), std=std, sequence=sequence, seed=seed, **fit_options(recipe)).model


def choose(strategy: str, pool: list[Architecture], values: dict[str, float], n: int, seed: int) -> list[Architecture]:
    """``n`` architectures of ``pool``; ``active`` runs the campaign's rounds (``active_rounds``, its
    default round sizes), its measurements looked up in ``values``."""
    if strategy == "random":
        order = np.random.default_rng(seed).permutation(len(pool))[:n]
        return [pool[i] for i in order]
    if strategy == "space-filling":
        return space_filling(pool, n, seed=seed)
    observed: list[tuple[Architecture, float]] = []

    def measure(index: int, archs: list[Architecture]) -> list[tuple[Architecture, float]]:
        observed.extend((a, values[a.id]) for a in archs)
        return observed

    return active_rounds(pool, n, measure, seed=seed)


def cell(values: list[float]) -> str:
    """``mean ± sample std`` (ddof=1), or ``mean ± -`` from one value."""
    spread = f"{np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{'-':>6}"
    return f"{np.mean(values):.4f} ± {spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=ANB_URL)
    parser.add_argument("--sizes", default="25,50,100,200,500,1000,all")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--seeds", type=at_least_one, default=3)
    parser.add_argument("--strategies", default="random,space-filling,active")
    parser.add_argument("--png", type=output_figure, default=None, help="plot τ against the number measured")
    parser.add_argument("--json", type=output_file, default=None, help="write the table's figures here")
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    unknown = [name for name in targets if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r} (known: {', '.join(TARGETS)})")
    for option, names in (("--targets", targets), ("--sizes", args.sizes.split(",")),
                          ("--strategies", args.strategies.split(","))):  # fmt: skip
        if twice := [name for i, name in enumerate(names) if name in names[:i]]:
            parser.error(f"{option} names {twice[0]!r} twice")
    sizes = args.sizes.split(",")
    bad = [size for size in sizes if size != "all" and not (size.isdigit() and int(size) >= MIN_SELECTION_ROWS)]
    if bad:  # fewer architectures than choosing a family takes would stop the run partway through its table
        parser.error(f"--sizes takes counts >= {MIN_SELECTION_ROWS} and 'all', got {bad[0]!r}")
    strategies = args.strategies.split(",")
    if set(strategies) - {"random", "space-filling", "active"}:
        parser.error(f"--strategies takes random, space-filling and active, got {args.strategies!r}")
    frame, report = import_anb(args.source)
    print(report.summary(), file=sys.stderr)
    results: dict[str, dict[str, list[dict[str, float | int | None]]]] = {}
    for name in targets:
        target, metric = TARGETS[name]
        part = frame[(frame["target"] == target) & (frame["metric"] == metric)].reset_index(drop=True)
        archs = [Architecture.from_config(r) for r in part[list(FEATURE_NAMES)].to_dict("records")]
        values = dict(zip((a.id for a in archs), part["value"], strict=True))
        nan = [np.nan] * len(part)
        stds = dict(zip((a.id for a in archs), part.get("std", nan), strict=True))
        sequences = dict(zip((a.id for a in archs), part.get("sequence", nan), strict=True))
        order = np.random.default_rng(1234).permutation(len(archs))
        n_test = len(archs) // 5
        test = [archs[i] for i in order[:n_test]]
        pool = [archs[i] for i in order[n_test:]]
        y_test = np.array([values[a.id] for a in test])
        print(f"\n{name} ({target} {metric}): test {len(test)} architectures, pool {len(pool)}")
        print(f"{'n':>6}  " + "  ".join(f"{s + ' τ':>22}  {'R²':>15}" for s in strategies))
        for size in args.sizes.split(","):
            n = len(pool) if size == "all" else int(size)
            if n > len(pool):
                print(f"{size:>6}  skipped: larger than the pool of {len(pool)} architectures", flush=True)
                continue
            cells = []
            for strategy in strategies:
                if size == "all" and strategy != strategies[0]:  # one fit on the whole pool, in the first column
                    cells.append(f"{'-':>22}  {'-':>15}")
                    continue
                taus, r2s = [], []
                for seed in range(args.seeds if size != "all" else 1):
                    chosen = choose("random" if size == "all" else strategy, pool, values, n, seed)
                    y, std, sequence = ([d[a.id] for a in chosen] for d in (values, stds, sequences))
                    model = fit_default(target, metric, chosen, y, std, sequence, seed)
                    m = regression_metrics(y_test, model.predict(test))
                    taus.append(m["kendall_tau"])
                    r2s.append(m["r2"])
                cells.append(f"{cell(taus):>22}  {cell(r2s):>15}")
                results.setdefault(name, {}).setdefault("all" if size == "all" else strategy, []).append(
                    {"n": n, **summary("kendall_tau", taus), **summary("r2", r2s), "seeds": len(taus)}
                )
            print(f"{size:>6}  " + "  ".join(cells), flush=True)
    if args.json:
        write_output(args.json, jsonio.dumps(results, indent=2) + "\n")
        print(f"figures: {args.json}", file=sys.stderr)
    if args.png and not results:  # every size was larger than the pool: no curve to draw
        print(f"plot: not drawn, no size was fitted ({args.png} not written)", file=sys.stderr)
    elif args.png:
        print(f"plot: {plot_curves(results, args.png)}", file=sys.stderr)
    return 0


def summary(name: str, values: list[float]) -> dict[str, float | None]:
    """``{name}_mean`` and ``{name}_std`` (sample std, None from one value) of ``values``."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {f"{name}_mean": float(np.mean(values)), f"{name}_std": std}


def plot_curves(results: dict[str, dict[str, list[dict]]], path):
    """One panel per target: held-out τ against the number of architectures fitted on, per strategy."""
    from accelnas.core.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (name, curves) in zip(axes[0], results.items(), strict=True):
        for strategy, rows in curves.items():
            if strategy == "all":
                ax.axhline(rows[0]["kendall_tau_mean"], color="grey", ls="--", lw=1, label=f"all ({rows[0]['n']})")
                continue
            n = [r["n"] for r in rows]
            err = [r["kendall_tau_std"] or 0.0 for r in rows]
            ax.errorbar(n, [r["kendall_tau_mean"] for r in rows], yerr=err, marker="o", capsize=3, label=strategy)
        ax.set_xscale("log")
        ax.set(title=name, xlabel="architectures measured", ylabel="Kendall τ (held-out)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def timed_main() -> int:
    start = time.perf_counter()
    code = main()
    print(f"\n{time.perf_counter() - start:.0f}s", file=sys.stderr)
    return code


if __name__ == "__main__":
    run_script(timed_main)
