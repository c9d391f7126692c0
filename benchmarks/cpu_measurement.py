"""How long the adaptive timing protocol takes on the CPU, and what a fixed repetition count would cost.

For EfficientNet-B0 and a few seeded random architectures of the search space, this measures
throughput (at the target's default batch) and latency (batch 1) through the CPU plugin, exactly as a
campaign does (plugin registry, BatchNorm calibration, export, compile, measure), and reports:

* the adaptive protocol of :mod:`accelnas.core.timing`: warm-up and timed-phase seconds, samples,
  whether the requested precision (relative half-width of the 95% CI of the mean) was reached, and
  the measured value with its CI;
* the cost of a fixed-repetition protocol for the same precision. Such a protocol picks one count N
  in advance for every architecture, so to guarantee the precision on all of them N must be the
  largest count any architecture needs. Each architecture's need is the smallest n with
  ``t(n-1) * cv / sqrt(n) <= precision`` (cv = observed std / mean of the per-call time, at least the
  protocol's ``min_samples``). Its time is ``N * mean seconds per call``;
* a common fixed baseline of N = 1000 repetitions, its time, and whether its CI would have been
  within the precision.

Run on demand (not part of the tests)::

    python benchmarks/cpu_measurement.py --input-size 64 --num-random 2 --max-seconds 5
    python benchmarks/cpu_measurement.py --json cpu_measurement.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelnas.core import jsonio
from accelnas.core.cli_options import output_file, seed, write_output
from accelnas.core.errors import AccelnasError
from accelnas.core.model import build_model, calibrate_batchnorm, count_macs
from accelnas.core.plugins import load_registry
from accelnas.core.provenance import host_provenance, usable_cores
from accelnas.core.records import Measurement, MeasureSettings
from accelnas.core.space import EFFICIENTNET_B0, Architecture, sample
from accelnas.core.timing import t_quantile

CONFIDENCE = 0.95
BASELINE_N = 1000
HOOKS = {"throughput": "measure_throughput", "latency": "measure_latency"}


@dataclass
class Row:
    """One (architecture, metric) measurement and the fixed-protocol figures derived from it."""

    label: str
    arch_id: str
    metric: str
    unit: str
    batch_size: int
    value: float
    ci_low: float
    ci_high: float
    rel_ci: float  # relative half-width of the reported CI (of the metric, as stored)
    time_rel_ci: float  # relative half-width of the CI of the mean time per call (what the protocol tests)
    precision_reached: bool
    n_samples: int
    warmup_calls: int
    warmup_steady: bool
    warmup_seconds: float
    timed_seconds: float
    sampled_seconds: float  # sum of the per-call times; timed_seconds minus this is protocol overhead
    sec_per_call: float
    cv: float
    n_needed: int
    adaptive_estimate: float = 0.0  # timed seconds, or if not reached: n_needed calls with the same overhead
    fixed_n: int = 0
    fixed_seconds: float = 0.0
    fixed_ratio: float = 0.0
    baseline_seconds: float = 0.0
    baseline_ratio: float = 0.0
    baseline_rel_ci: float = 0.0
    baseline_ok: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def per_call_seconds(m: Measurement) -> list[float]:
    """Seconds per call from a measurement's samples (images/s per batch, or ms per inference)."""
    if m.metric == "throughput":
        return [m.batch_size / s for s in m.samples]
    return [s / 1e3 for s in m.samples]


def repetitions_needed(cv: float, precision: float, floor: int, confidence: float = CONFIDENCE) -> int:
    """Smallest n >= floor with t(n-1) * cv / sqrt(n) <= precision (Student-t CI of the mean)."""
    floor = max(floor, 2)
    if cv <= 0:
        return floor
    z = t_quantile(10**9, confidence)  # normal quantile: a lower bound since t > z
    n = max(floor, math.ceil((z * cv / precision) ** 2))
    while t_quantile(n - 1, confidence) * cv / math.sqrt(n) > precision:
        n += 1
    return n


def relative_half_width(cv: float, n: int, confidence: float = CONFIDENCE) -> float:
    return t_quantile(n - 1, confidence) * cv / math.sqrt(n)


def make_row(label: str, arch: Architecture, m: Measurement, settings: MeasureSettings) -> Row:
    secs = per_call_seconds(m)
    mean = statistics.fmean(secs)
    cv = statistics.stdev(secs) / mean if len(secs) > 1 else 0.0
    return Row(
        label=label,
        arch_id=arch.id,
        metric=m.metric,
        unit=m.unit,
        batch_size=m.batch_size,
        value=m.mean,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        rel_ci=m.relative_ci,
        time_rel_ci=float(m.extra.get("relative_ci", float("nan"))),
        precision_reached=m.precision_reached,
        n_samples=len(secs),
        warmup_calls=int(m.extra.get("warmup_calls", 0)),
        warmup_steady=bool(m.extra.get("warmup_steady", False)),
        warmup_seconds=float(m.extra.get("warmup_seconds", 0.0)),
        timed_seconds=float(m.extra.get("timed_seconds", sum(secs))),
        sampled_seconds=sum(secs),
        sec_per_call=mean,
        cv=cv,
        n_needed=repetitions_needed(cv, settings.precision, settings.min_samples),
        extra={k: v for k, v in m.extra.items() if k in ("p50", "p90", "p99", "min")},
    )


def apply_fixed_protocols(rows: list[Row], precision: float) -> dict[str, int]:
    """Fill in the fixed-N and N=1000 figures; N is the maximum need over the architectures, per metric."""
    fixed: dict[str, int] = {}
    for r in rows:
        overhead = r.timed_seconds / r.sampled_seconds if r.sampled_seconds > 0 else 1.0
        reached = r.precision_reached
        r.adaptive_estimate = r.timed_seconds if reached else r.n_needed * r.sec_per_call * overhead
    for metric in HOOKS:
        group = [r for r in rows if r.metric == metric]
        if not group:
            continue
        n = max(r.n_needed for r in group)
        fixed[metric] = n
        for r in group:
            r.fixed_n = n
            r.fixed_seconds = n * r.sec_per_call
            r.fixed_ratio = r.fixed_seconds / r.timed_seconds if r.timed_seconds > 0 else math.nan
            r.baseline_seconds = BASELINE_N * r.sec_per_call
            r.baseline_ratio = r.baseline_seconds / r.timed_seconds if r.timed_seconds > 0 else math.nan
            r.baseline_rel_ci = relative_half_width(r.cv, BASELINE_N)
            r.baseline_ok = r.baseline_rel_ci <= precision
    return fixed


# -- measuring --------------------------------------------------------------------------------------


def measure_all(args: argparse.Namespace, settings: MeasureSettings) -> tuple[list[Row], dict[str, Any]]:
    t_quantile(10, CONFIDENCE)  # import scipy.stats now: a one-time cost the first timed phase would pay
    registry = load_registry()
    target = registry.target(args.target)
    metrics = [m for m in HOOKS if m in target.metrics]
    archs = [("B0", EFFICIENTNET_B0)] + [
        (f"rand{i}", a) for i, a in enumerate(sample(args.num_random, seed=args.seed, exclude={EFFICIENTNET_B0.id}), 1)
    ]
    rows: list[Row] = []
    info: dict[str, Any] = {
        "target": target.name,
        "batch_size": settings.batch_for(target),
        "architectures": [],
    }
    for label, arch in archs:
        macs = count_macs(arch, settings.input_size)
        entry = {"label": label, "id": arch.id, "mmacs": macs / 1e6}
        info["architectures"].append(entry)
        print(f"[{label}] {arch.id}  {macs / 1e6:.0f} MMACs: exporting ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="accelnas-bench-") as tmp:
            workdir = Path(tmp)
            try:
                model = calibrate_batchnorm(build_model(arch), settings.input_size)
                exported, _ = registry.call_first(
                    "export_model",
                    target=target,
                    architecture=arch,
                    model=model,
                    settings=settings,
                    workdir=workdir,
                )
                compiled, _ = registry.call_first(
                    "compile", target=target, exported=exported, settings=settings, workdir=workdir
                )
            except AccelnasError as exc:
                entry["error"] = str(exc)
                print(f"[{label}] export/compile failed: {exc}", file=sys.stderr)
                continue
            entry["prepare_seconds"] = round(time.perf_counter() - t0, 3)
            entry["compile_info"] = compiled.info
            for metric in metrics:
                try:
                    m, _ = registry.call_first(HOOKS[metric], target=target, compiled=compiled, settings=settings)
                except AccelnasError as exc:
                    entry[f"{metric}_error"] = str(exc)
                    print(f"[{label}] {metric} failed: {exc}", file=sys.stderr)
                    continue
                row = make_row(label, arch, m, settings)
                rows.append(row)
                print(
                    f"[{label}] {metric}: {row.value:.4g} {row.unit} ±{row.rel_ci:.2%}, "
                    f"{row.n_samples} samples, "
                    f"{row.warmup_seconds:.1f}s warm-up + {row.timed_seconds:.1f}s timed",
                    file=sys.stderr,
                    flush=True,
                )
            del compiled, exported, model
    return rows, info


# -- printing ---------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], explain: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print()
    for line in explain:
        print(f"  {line}")
    print()


def _num(value: float, unit: str) -> str:
    return f"{value:.1f}" if unit == "images/s" else f"{value:.3f}"


def _fmt_value(value: float, unit: str) -> str:
    return f"{_num(value, unit)} {unit}"


def _mark(r: Row) -> str:
    return "" if r.precision_reached else "*"


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def _print_estimate(rows: list[Row], fixed_total: float, base_total: float) -> None:
    """For runs that ran out of budget: the adaptive cost estimated from N needed, and the ratios to it."""
    if all(r.precision_reached for r in rows):
        return
    est = sum(r.adaptive_estimate for r in rows)
    print("  adaptive estimated to reach the precision everywhere (N needed × s/call × observed overhead for runs")
    print(
        f"  that ran out of budget): {_seconds(est)}; fixed N = {fixed_total / est:.2f}x it, "
        f"N={BASELINE_N} = {base_total / est:.2f}x it"
    )


def print_report(rows: list[Row], fixed: dict[str, int], info: dict[str, Any], settings: MeasureSettings) -> None:
    host = host_provenance()
    print()
    print("=" * 100)
    print("CPU measurement cost: adaptive protocol vs fixed repetitions")
    print("=" * 100)
    print(f"target          {info['target']}  (throughput batch {info['batch_size']}, latency batch 1)")
    print(
        f"host            {host['cpu_model']}, {host['physical_cores']} physical / {host['logical_cores']} "
        f"logical cores, threads={settings.threads or f'{usable_cores()} (the usable physical cores)'}"
    )
    print(f"input size      {settings.input_size}x{settings.input_size}")
    print(
        f"precision       95% CI half-width <= {settings.precision:.1%} of the mean, min {settings.min_samples} samples"
    )
    print(
        f"budgets         warm-up <= {settings.warmup_seconds:g} s, "
        f"timed phase <= {settings.max_seconds:g} s "
        "per metric"
    )
    print()
    print("Architectures:")
    for a in info["architectures"]:
        note = f"  FAILED: {a['error']}" if "error" in a else f"  (export+compile {a.get('prepare_seconds', 0):.1f} s)"
        print(f"  {a['label']:<6} {a['id']}  {a['mmacs']:.0f} MMACs{note}")
    print()

    for metric in HOOKS:
        group = [r for r in rows if r.metric == metric]
        if not group:
            continue
        batch = group[0].batch_size
        title = f"{metric.upper()} (batch {batch})"
        print("-" * 100)
        print(title)
        print("-" * 100)
        print("Adaptive protocol")
        _table(
            ["arch", "value", "95% CI", "±abs", "±rel", "samples", "reached", "warm-up", "timed", "overhead"],
            [
                [
                    r.label,
                    _fmt_value(r.value, r.unit),
                    f"[{_num(r.ci_low, r.unit)}, {_num(r.ci_high, r.unit)}]",
                    _fmt_value((r.ci_high - r.ci_low) / 2, r.unit),
                    f"{r.rel_ci:.2%}",
                    str(r.n_samples),
                    "yes" if r.precision_reached else "NO",
                    f"{_seconds(r.warmup_seconds)} ({r.warmup_calls}{'' if r.warmup_steady else '!'})",
                    _seconds(r.timed_seconds),
                    f"{r.timed_seconds - r.sampled_seconds:.3f} s",
                ]
                for r in group
            ],
            [
                f"value     mean {metric} ({group[0].unit}); 95% CI = Student-t CI of the mean as stored",
                "±abs/rel  half-width of that CI, in units and relative to the mean",
                "samples   timed calls the protocol took",
                "reached   whether the CI got within the precision before the timed budget ended",
                "warm-up   seconds of warm-up (calls; '!': unsteady, budget ended before two windows agreed)",
                "timed     seconds of the timed phase until the precision was reached (or the budget ended)",
                "overhead  timed phase minus the sum of the sampled call times (stopping-rule bookkeeping)",
            ],
        )
        n_fixed = fixed[metric]
        print(f"Fixed-repetition protocols (fixed N = {n_fixed}, the largest need below; baseline N = {BASELINE_N})")
        _table(
            [
                "arch",
                "s/call",
                "cv",
                "N needed",
                f"N={n_fixed} time",
                "fixed/adapt",
                f"N={BASELINE_N} time",
                "1000/adapt",
                f"±rel@{BASELINE_N}",
                "within",
            ],
            [
                [
                    r.label,
                    f"{r.sec_per_call * 1e3:.2f} ms",
                    f"{r.cv:.2%}",
                    str(r.n_needed),
                    _seconds(r.fixed_seconds),
                    f"{r.fixed_ratio:.2f}x{_mark(r)}",
                    _seconds(r.baseline_seconds),
                    f"{r.baseline_ratio:.1f}x{_mark(r)}",
                    f"{r.baseline_rel_ci:.2%}",
                    "yes" if r.baseline_ok else "NO",
                ]
                for r in group
            ],
            [
                "s/call      mean time of one timed call (one batch for throughput, one image for latency)",
                "cv          observed coefficient of variation (std / mean) of the per-call time",
                f"N needed    smallest n >= {settings.min_samples} with t(n-1)·cv/√n <= "
                f"{settings.precision:.1%}: "
                "this architecture's own repetition need",
                f"N={n_fixed} time  what a fixed protocol guaranteeing the precision on every "
                "architecture costs "
                "(N × s/call)",
                "fixed/adapt that time ÷ the adaptive timed phase (> 1: the adaptive protocol is cheaper)",
                f"N={BASELINE_N} time  the usual fixed {BASELINE_N} repetitions (N × s/call); "
                f"{BASELINE_N}/adapt its ratio",
                f"±rel@{BASELINE_N}   relative CI half-width {BASELINE_N} repetitions would give; "
                "within = <= "
                "the precision",
                "*           the adaptive run stopped at its budget without reaching the precision, so this ratio",
                "            compares with an incomplete adaptive run (its real cost would be higher)",
            ],
        )
        adaptive = sum(r.timed_seconds for r in group)
        warm = sum(r.warmup_seconds for r in group)
        fixed_total = sum(r.fixed_seconds for r in group)
        base_total = sum(r.baseline_seconds for r in group)
        print(f"Totals ({metric}, {len(group)} architectures):")
        print(f"  adaptive timed phase {_seconds(adaptive)}  (+ warm-up {_seconds(warm)})")
        print(
            f"  fixed N={n_fixed:<6}  {_seconds(fixed_total)}  = {fixed_total / adaptive:.2f}x adaptive "
            f"(with the same warm-up: {(fixed_total + warm) / (adaptive + warm):.2f}x)"
        )
        print(
            f"  fixed N={BASELINE_N:<6}  {_seconds(base_total)}  = {base_total / adaptive:.2f}x adaptive "
            f"(with the same warm-up: {(base_total + warm) / (adaptive + warm):.2f}x); "
            f"within precision on {sum(r.baseline_ok for r in group)}/{len(group)}"
        )
        _print_estimate(group, fixed_total, base_total)
        print()

    if rows:
        adaptive = sum(r.timed_seconds for r in rows)
        warm = sum(r.warmup_seconds for r in rows)
        fixed_total = sum(r.fixed_seconds for r in rows)
        base_total = sum(r.baseline_seconds for r in rows)
        print("=" * 100)
        print("All metrics")
        print(f"  adaptive: {_seconds(adaptive)} timed + {_seconds(warm)} warm-up = {_seconds(adaptive + warm)}")
        print(f"  fixed (N per metric = max need): {_seconds(fixed_total)} timed = {fixed_total / adaptive:.2f}x")
        print(
            f"  fixed N={BASELINE_N}: {_seconds(base_total)} timed = {base_total / adaptive:.2f}x, "
            "within precision "
            f"on {sum(r.baseline_ok for r in rows)}/{len(rows)}"
        )
        missed = [f"{r.label}/{r.metric}" for r in rows if not r.precision_reached]
        if missed:
            print(f"  precision NOT reached in the budget for {len(missed)}/{len(rows)}: {', '.join(missed)}")
            print("  (their adaptive time is the budget, so ratios marked * overstate the saving)")
        _print_estimate(rows, fixed_total, base_total)
        print("  note: N needed comes from each run's observed cv, itself an estimate; a fixed protocol has to")
        print("        choose N before seeing it, so in practice it would need a safety margin on top.")
        print("=" * 100)


# -- entry point ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = MeasureSettings()
    p = argparse.ArgumentParser(
        description="Time the adaptive measurement protocol on the CPU for EfficientNet-B0 and random "
        "architectures, and compare with fixed repetition counts for the same precision.",
    )
    p.add_argument("--target", default="cpu/onnxruntime", help="target name (default: %(default)s)")
    p.add_argument("--input-size", type=int, default=224, help="input resolution (default: %(default)s)")
    p.add_argument("--num-random", type=int, default=4, help="random architectures besides B0 (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random architectures (default: %(default)s)")
    p.add_argument(
        "--precision",
        type=float,
        default=0.02,
        help="relative half-width of the 95%% CI of the mean (default: %(default)s)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=defaults.max_seconds,
        help="timed-phase budget per metric, seconds (default: %(default)s)",
    )
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=defaults.warmup_seconds,
        help="warm-up budget per metric, seconds (default: %(default)s)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="throughput batch (default: the target's)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the usable physical cores)")
    p.add_argument("--json", metavar="PATH", type=output_file, default=None, help="also write the results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = MeasureSettings(
            input_size=args.input_size,
            batch_size=args.batch_size,
            precision=args.precision,
            max_seconds=args.max_seconds,
            warmup_seconds=args.warmup_seconds,
            threads=args.threads,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.num_random < 0:
        print("error: --num-random must be >= 0", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        rows, info = measure_all(args, settings)
    except AccelnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    if not rows:
        print("error: nothing was measured", file=sys.stderr)
        return 1
    fixed = apply_fixed_protocols(rows, settings.precision)
    print_report(rows, fixed, info, settings)
    wall = time.perf_counter() - started
    print(f"wall time of this benchmark: {_seconds(wall)}")
    if args.json:
        payload = {
            "settings": settings.to_dict(),
            "confidence": CONFIDENCE,
            "baseline_n": BASELINE_N,
            "fixed_n": fixed,
            "host": host_provenance(),
            "wall_seconds": wall,
            **info,
            "rows": [asdict(r) for r in rows],
        }
        write_output(args.json, jsonio.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
