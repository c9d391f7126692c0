"""Compare NAS optimizers on a benchmark: hypervolume after 100/500/2000 queries over seeds, and EfficientNet-B0.

    python benchmarks/optimizers.py --benchmark anb                                  # default comparison
    python benchmarks/optimizers.py --from-anb anb_dataset_jsons.tar.gz --seeds 5    # build the benchmark first
    python benchmarks/optimizers.py --benchmark anb --objectives accuracy,latency@vck190 --png hv.png --json hv.json

Part 1 runs every optimizer with seeds 0..S-1 for the full budget on the objectives and prints the
hypervolume of what it found among its first 100, 500, ... queries (mean ± std over seeds; the
normalization and reference point are those of ``accelnas.search.pareto``). Part 2 runs one
optimizer on accuracy + throughput for each paper device and prints the found architectures that
dominate EfficientNet-B0: the most accurate and the fastest of them, with their gains.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from accelnas.core import jsonio
from accelnas.core.cli_options import at_least_one, output_figure, output_file, run_script, write_output
from accelnas.search.compare import PAPER_DEVICES
from accelnas.search.objectives import parse_objectives
from accelnas.search.optimizers import check
from accelnas.search.plots import plot_anytime
from accelnas.search.problem import SearchProblem
from accelnas.search.run import search
from accelnas.surrogates.benchmark import Benchmark


def _benchmark(args: argparse.Namespace, tmp: Path) -> Benchmark:
    if args.benchmark:
        return Benchmark.load(args.benchmark)
    from accelnas.surrogates.anb_dataset import import_anb
    from accelnas.surrogates.build import build_all

    frame, report = import_anb(args.from_anb)
    print(report.summary(), file=sys.stderr)
    build_all(frame, tmp / "bench", echo=lambda line: print(line, file=sys.stderr))
    return Benchmark.load(tmp / "bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--benchmark", help="benchmark directory (accelnas surrogates build)")
    source.add_argument("--from-anb", help="build one from this Accel-NASBench archive/directory first")
    parser.add_argument("--objectives", default="accuracy,throughput@zcu102")
    parser.add_argument("--optimizers", default="random,evolution,nsga2")
    parser.add_argument("--budget", type=at_least_one, default=2000)
    parser.add_argument("--seeds", type=at_least_one, default=5)
    parser.add_argument("--checkpoints", default="100,500,2000", help="query counts to report")
    parser.add_argument("--evolution-batch", type=int, default=None,
                        help="children per evolution step, in either part [evolution's own: 1]")  # fmt: skip
    parser.add_argument("--b0-devices", default=",".join(PAPER_DEVICES), help="devices for part 2 ('' to skip)")
    parser.add_argument("--b0-optimizer", default="nsga2")
    parser.add_argument("--b0-budget", type=at_least_one, default=2000)
    parser.add_argument("--png", type=output_figure, default=None, help="anytime hypervolume plot")
    parser.add_argument("--json", type=output_file, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    try:
        checkpoints = [at_least_one(c) for c in args.checkpoints.split(",") if c.strip()]
    except (ValueError, argparse.ArgumentTypeError):
        parser.error(f"--checkpoints takes comma-separated query counts >= 1, got {args.checkpoints!r}")
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    devices = [d.strip() for d in args.b0_devices.split(",") if d.strip()]
    batch = {} if args.evolution_batch is None else {"batch": args.evolution_batch}
    options = batch if "evolution" in optimizers else {}
    b0_options = batch if devices and args.b0_optimizer == "evolution" else {}
    if batch and not (options or b0_options):
        parser.error("--evolution-batch is for the evolution optimizer, which neither part runs")
    with tempfile.TemporaryDirectory() as tmp:
        bench = _benchmark(args, Path(tmp))
        problem = SearchProblem(bench, parse_objectives(args.objectives))
        per_device = [SearchProblem(bench, parse_objectives(f"accuracy,throughput@{d}")) for d in devices]
        if devices:
            check(args.b0_optimizer, b0_options)  # part 2's settings fail before part 1 runs
        seeds = list(range(args.seeds))
        t0 = time.perf_counter()

        def progress(run, done: int, total: int) -> None:
            print(
                f"[{done}/{total}] {run.label}: hypervolume {run.hypervolume:.4f} ({run.seconds:.1f}s)", file=sys.stderr
            )

        outcome = search(problem, optimizers, args.budget, seeds, options, checkpoints=checkpoints, progress=progress)
        at = [c for c in checkpoints if c <= args.budget] or [args.budget]
        table = outcome.hypervolume_table(at)
        print(f"objectives: {args.objectives}; budget {args.budget} unique queries; seeds {seeds}")
        print(f"hypervolume (normalized, reference point {outcome.normalizer.reference}), mean ± std over seeds:")
        print(f"{'optimizer':<11}" + "".join(f"{'@' + str(n):>19}" for n in at) + f"{'s/run':>8}")
        for name, per in table.items():
            seconds = [r.seconds for r in outcome.runs if r.optimizer == name]
            cells = "".join(f"{m:>10.4f} ± {s:<6.4f}" for m, s, _ in per.values())
            print(f"{name:<11}{cells}{sum(seconds) / len(seconds):>8.1f}")
        if args.png:
            print(f"plot: {plot_anytime(outcome.runs, args.png, title=args.objectives)}")

        comparisons = []
        if devices:
            print(f"\nEfficientNet-B0 vs {args.b0_optimizer} ({args.b0_budget} queries, seed 0) per device:")
        for device_problem in per_device:
            result = search(device_problem, [args.b0_optimizer], args.b0_budget, [0], b0_options)
            for c in result.comparisons:
                print(c.summary())
                comparisons.append(c.to_dict())
        print(f"total {time.perf_counter() - t0:.0f}s")

    if args.json:
        write_output(
            args.json,
            jsonio.dumps(
                {
                    "objectives": args.objectives,
                    "budget": args.budget,
                    "seeds": seeds,
                    "normalization": outcome.normalizer.describe(problem),
                    "hypervolume": {
                        name: {str(n): {"mean": m, "std": s} for n, (m, s, _) in per.items()}
                        for name, per in table.items()
                    },
                    "b0_comparison": comparisons,
                },
                indent=2,
            ),
        )
    return 0


if __name__ == "__main__":
    run_script(main)
