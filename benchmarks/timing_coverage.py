"""How often the timing protocol's 95% interval holds the long-run mean, on simulated call times.

    python benchmarks/timing_coverage.py [--runs 1000] [--min-seconds 0,0.25,0.5] [--call-ms 1]

Runs ``core.timing.measure`` on a simulated clock (no real work, a few seconds per 1,000 runs)
for call times that are steady, skewed (lognormal) or interrupted (a share of calls several times
slower, as when another process takes the core), with each minimum timed duration. Prints per case
the share of intervals that hold the long-run mean (0.95 is right), the share of runs that reached
the precision, the median number of samples, the mean's bias, and the share of means more than the
requested precision off.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np

from accelnas.core.cli_options import at_least_one, non_negative_number, positive_number, run_script
from accelnas.core.timing import measure

PRECISION = 0.02

# name -> (call time in units of the typical call given a generator, long-run mean in the same units)
CASES: dict[str, tuple[Callable[[np.random.Generator], float], float]] = {
    "steady (cv 3%)": (lambda g: 1 + 0.03 * g.standard_normal(), 1.0),
    "lognormal (sigma 0.3)": (lambda g: g.lognormal(0, 0.3), float(np.exp(0.045))),
    "5% of calls 2x slower": (lambda g: (1 + 0.01 * g.standard_normal()) * (2 if g.random() < 0.05 else 1), 1.05),
    "2% of calls 5x slower": (lambda g: (1 + 0.01 * g.standard_normal()) * (5 if g.random() < 0.02 else 1), 1.08),
}


def _durations(text: str) -> list[float]:
    durations = [non_negative_number(part) for part in text.split(",") if part.strip()]
    if not durations:
        raise argparse.ArgumentTypeError("give at least one duration")
    return durations


def coverage(case: str, runs: int, call_seconds: float, min_seconds: float) -> dict[str, float]:
    """Run ``measure`` ``runs`` times on simulated calls of ``case``; the shares and medians above."""
    draw, long_run = CASES[case]
    held = reached = 0
    sizes, means = [], []
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        now = [0.0]

        def call(rng: np.random.Generator = rng, now: list[float] = now) -> None:
            now[0] += call_seconds * draw(rng)

        result = measure(call, precision=PRECISION, max_seconds=30.0, warmup_seconds=0.0, min_seconds=min_seconds,
                         clock=lambda now=now: now[0])  # fmt: skip
        held += result.ci_low <= call_seconds * long_run <= result.ci_high
        reached += result.precision_reached
        sizes.append(len(result.samples))
        means.append(result.mean / (call_seconds * long_run) - 1)
    errors = np.abs(np.array(means))
    return {
        "coverage": held / runs,
        "reached": reached / runs,
        "median_samples": statistics.median(sizes),
        "bias": float(np.mean(means)),
        "off": float((errors > PRECISION).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=at_least_one, default=1000, help="simulated measurements per case")
    parser.add_argument("--min-seconds", type=_durations, default=[0.0, 0.25, 0.5],
                        help="minimum timed durations to compare, comma-separated")  # fmt: skip
    parser.add_argument("--call-ms", type=positive_number, default=1.0, help="typical call time in milliseconds")
    args = parser.parse_args(argv)
    print(f"{'case':<24} {'min s':>6} {'coverage':>9} {'reached':>8} {'samples':>8} {'bias':>8} {'off >2%':>8}")
    for case in CASES:
        for min_seconds in args.min_seconds:
            r = coverage(case, args.runs, args.call_ms / 1e3, min_seconds)
            print(f"{case:<24} {min_seconds:>6g} {r['coverage']:>9.3f} {r['reached']:>8.2f} "
                  f"{r['median_samples']:>8.0f} {r['bias']:>+8.4f} {r['off']:>8.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_script(main)
