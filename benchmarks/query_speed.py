"""Query speed of a benchmark directory: one architecture at a time, and batches of 10,000.

    python benchmarks/query_speed.py BENCH_DIR [--device zcu102 --metric latency] [--repeats 5]

Prints, for every surrogate (or those of the chosen device and/or metric), the median time of a
single-architecture query and the throughput of batched queries (architectures per second), with the
goals (≤ 2 ms, ≥ 50,000/s).
"""

from __future__ import annotations

import argparse
import statistics
import time

from accelnas.core.cli_options import at_least_one, run_script
from accelnas.core.space import sample
from accelnas.surrogates.benchmark import Benchmark

SINGLE_GOAL_MS = 2.0  # one architecture per query
BATCH_GOAL = 50_000  # architectures per second in batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench_dir", help="A benchmark directory (accelnas surrogates build --out).")
    parser.add_argument("--device", help="Only this device's surrogates (default: every one).")
    parser.add_argument("--metric", help="Only this metric's surrogates (default: every one).")
    parser.add_argument(
        "--batch",
        type=at_least_one,
        default=10_000,
        help=f"Architectures per batched query; the {BATCH_GOAL:,}/s goal is for 10,000.",
    )
    parser.add_argument("--repeats", type=at_least_one, default=5, help="Batched queries timed (their median counts).")
    args = parser.parse_args(argv)
    bench = Benchmark.load(args.bench_dir)
    pairs = [(s.target, s.metric) for s in bench.find(args.device, args.metric)]
    if not pairs:
        raise bench.not_found(args.device, args.metric)
    archs = sample(args.batch, seed=123)
    singles = archs[:200]
    print(f"{'target':<18} {'metric':<10} {'single (median)':>16} {'batch of ' + str(args.batch):>20}  met")
    for device, metric in pairs:
        bench.query(singles[:10], device=device, metric=metric)  # warm caches and lazy imports
        times = []
        for a in singles:
            t0 = time.perf_counter()
            bench.query(a, device=device, metric=metric)
            times.append(time.perf_counter() - t0)
        batch_times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            bench.query(archs, device=device, metric=metric)
            batch_times.append(time.perf_counter() - t0)
        single_ms = statistics.median(times) * 1e3
        rate = args.batch / statistics.median(batch_times)
        met = "yes" if single_ms <= SINGLE_GOAL_MS and rate >= BATCH_GOAL else "no"
        print(f"{device or '-':<18} {metric:<10} {single_ms:>13.3f} ms {rate:>15,.0f} /s  {met}")
    print(f"goals: single ≤ {SINGLE_GOAL_MS:g} ms, batches of 10,000 ≥ {BATCH_GOAL:,} architectures/s")
    return 0


if __name__ == "__main__":
    run_script(main)
