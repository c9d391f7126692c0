"""Training-proxy search for real on this machine: scikit-learn's digits upsampled to 32 px.

Trains seeded random Accel-NASBench architectures (10-class heads) under the reference recipe
``digits-reference`` and under every candidate of ``digits-proxy-space`` (epochs x data fraction),
then reports, per proxy, Kendall τ against the reference and the measured cost per architecture
(CPU seconds of the training process and wall seconds), and compares what the grid search, successive
halving and the Optuna study each had to train to reach their choice. Everything is stored in a
campaign store, so an interrupted run resumes; a second run only re-reads the store.

Also analyses the paper's paired ablation results (proxified vs few-proxy, three seeds) when
``../shared/datasets/accel-nasbench/ablations`` exists.

Run on demand (not part of the tests); about 15 CPU-minutes on one core with the defaults::

    nice -n 10 python benchmarks/proxy_search_digits.py --out proxy-search-digits
    python benchmarks/proxy_search_digits.py --num 12 --threads 2 --cost wall --out /tmp/psd
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from accelnas.core import jsonio
from accelnas.core.cli_options import at_least_one, output_folder, run_script, seed
from accelnas.core.errors import AccelnasError
from accelnas.core.provenance import host_provenance
from accelnas.core.space import sample
from accelnas.core.store import Store
from accelnas.training import proxy_search as ps
from accelnas.training.data import digits
from accelnas.training.plots import cost_tau_front
from accelnas.training.ranking import analyse_ablations, kendall_tau, read_ablations
from accelnas.training.recipe import load_recipe

ABLATIONS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "accel-nasbench" / "ablations"


def _threshold(text: str) -> float:
    """An argparse type: a Kendall τ, within [-1, 1] (as ``accelnas proxy-search --threshold``)."""
    value = float(text)
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be within [-1, 1], got {text}")
    return value


def _architectures(text: str) -> int:
    """An argparse type: at least 3 architectures, the fewest a proxy search ranks."""
    value = int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"a proxy search ranks architectures: give at least 3, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--num", type=_architectures, default=12, help="architectures, at least 3 (>= 12 for the verification)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="architecture sampling seed")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--reference", default="digits-reference")
    parser.add_argument("--space", default="digits-proxy-space")
    parser.add_argument("--threshold", type=_threshold, default=0.5, help="minimum Kendall τ of an acceptable proxy")
    parser.add_argument("--reference-seeds", type=at_least_one, default=2,
                        help="train the reference with this many seeds: their mean is the reference, "
                        "their agreement the noise ceiling of τ")  # fmt: skip
    parser.add_argument("--cost", choices=ps.COSTS, default="cpu", help="cost model the search optimises")
    parser.add_argument("--threads", type=at_least_one, default=1, help="torch intra-op threads")
    parser.add_argument("--trials", type=at_least_one, default=4, help="Optuna trials")
    parser.add_argument("--out", type=output_folder, default="proxy-search-digits")  # a text default is checked too
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args)
    except AccelnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (args.out / "report.json").write_text(jsonio.dumps(report, indent=2), encoding="utf-8")
    print(f"\nreport: {args.out / 'report.json'}")
    return 0


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    data = digits(image_size=args.image_size, seed=0)
    archs = sample(args.num, args.seed)
    reference_recipe = load_recipe(args.reference)
    space = ps.load_space(args.space)
    print(f"{len(archs)} architectures, {data.name}: {len(data.train)} train / {len(data.val)} val images; "
          f"reference {reference_recipe.name}; {space.size()} proxies; torch threads {args.threads}")  # fmt: skip
    with Store(args.out / "store.db") as store:
        evaluator = ps.TrainingEvaluator(data, store, echo=lambda line: print(line, flush=True))
        runs = [evaluator.evaluate(reference_recipe.replace(seed=s), archs) for s in range(args.reference_seeds)]
        ids = [a.id for a in archs if all(a.id in r for r in runs)]
        reference = {i: sum(r[i].top1 for r in runs) / len(runs) for i in ids}
        ref = runs[0]
        seed_taus = [
            kendall_tau([runs[a][i].top1 for i in ids], [runs[b][i].top1 for i in ids])
            for a in range(len(runs)) for b in range(a + 1, len(runs))
        ]  # fmt: skip
        results = ps.run_strategies(
            ["grid", "halving", "optuna"], space, archs, reference, evaluator, args.threshold,
            trials=args.trials, seed=args.seed, cost=args.cost,
        )  # fmt: skip
        quiet = ps.TrainingEvaluator(data, store)
        per_proxy = []
        for cand in space.candidates():
            evs = quiet.evaluate(cand.recipe, archs)
            s = ps.score(cand, reference, evs, cost="cpu")
            per_proxy.append({
                "proxy": cand.name, "tau": s.tau, "n": s.n_archs, "mean_top1": s.mean_top1,
                "cpu_s_per_arch": s.seconds_per_arch,
                "wall_s_per_arch": sum(e.wall_seconds for e in evs.values()) / max(1, len(evs)),
            })  # fmt: skip
    ref_cpu = sum(e.cpu_seconds for e in ref.values()) / len(ref)
    ref_wall = sum(e.wall_seconds for e in ref.values()) / len(ref)
    mean_ref = sum(reference.values()) / len(reference)
    print(f"\nreference {reference_recipe.name} (mean of {len(runs)} seeds): mean top-1 {mean_ref:.2f}% "
          f"(min {min(reference.values()):.2f}, max {max(reference.values()):.2f}); "
          f"{ref_cpu:.1f} CPU-s / {ref_wall:.1f} wall-s per architecture and seed; "
          f"τ between reference seeds: {', '.join(f'{t:.3f}' for t in seed_taus) or 'n/a (one seed)'}")  # fmt: skip
    print(f"\n{'proxy':<34} {'tau':>6} {'top-1':>7} {'CPU s/arch':>11} {'wall s/arch':>12} {'cost vs ref':>12}")
    for row in sorted(per_proxy, key=lambda r: r["cpu_s_per_arch"]):
        print(f"{row['proxy']:<34} {row['tau']:6.3f} {row['mean_top1']:7.2f} {row['cpu_s_per_arch']:11.1f} "
              f"{row['wall_s_per_arch']:12.1f} {row['cpu_s_per_arch'] / ref_cpu:12.2f}")  # fmt: skip
    table = ps.comparison(results)
    print(f"\nsearch strategies (cost model: {args.cost} seconds; threshold τ >= {args.threshold}):")
    print(table.to_string(index=False))
    table.to_csv(args.out / "comparison.csv", index=False)
    png = cost_tau_front(results, args.out / "pareto.png", cost_unit=f"{args.cost} s")
    report = {
        "archs": [a.id for a in archs],
        "reference_seed_taus": seed_taus,
        "reference": {
            "recipe": reference_recipe.to_dict(),
            "cpu_s_per_arch": ref_cpu,
            "wall_s_per_arch": ref_wall,
            "top1": reference,
        },
        "proxies": per_proxy,
        "strategies": table.to_dict("records"),
        "pareto_png": str(png),
        "seconds": time.perf_counter() - start,
        "host": host_provenance(),
    }
    if ABLATIONS.is_dir():
        analysis = analyse_ablations(read_ablations(ABLATIONS))
        print(f"\nAccel-NASBench ablations ({analysis.n_archs} architectures, 3 seeds per recipe):")
        print(analysis.table().to_string(index=False))
        for c in analysis.costs:
            print(
                f"  {c['recipe']:<10} {c['gpu_hours_per_model']:.2f} GPU-hours/model, mean top-1 {c['mean_top1']:.2f}%"
            )
        report["ablations"] = {"table": analysis.table().to_dict("records"), "costs": analysis.costs}
    print(f"\ntotal {time.perf_counter() - start:.0f}s; plot {png}")
    return report


if __name__ == "__main__":
    run_script(main)
