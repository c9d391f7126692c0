"""The timing protocol every measurement follows.

1. Warm-up: call at least ``min_warmup`` times, then in windows of ``window`` calls until the mean
   of a window is within ``steady_tolerance`` of the previous one (steady) or the warm-up budget ends.
2. Timed phase: one sample per call until the 95% confidence interval of the mean (Student t) is
   within ``precision`` of the mean, with at least ``min_samples`` samples and at least
   ``min_seconds`` of timed calls (a quarter of the time budget where that is less), or until the
   time budget ends. The result says whether the precision was reached. The stopping rule keeps
   running statistics, so checking after every sample costs O(1).

The interval assumes independent calls. Calls on a shared machine are not: rare slow calls
(another process taking the core) leave a few dozen fast calls with a narrow interval and a mean
below the long-run one. The minimum timed duration makes the sample span such interruptions: with
1 ms calls, 5% of them twice as slow, 95% intervals held the long-run mean in 60% of runs without it
and in 92% with a quarter second of calls (2% of calls five times as slow: 34% and 93%;
``benchmarks/timing_coverage.py``).

Throughput is ``batch / mean time per batch``; its CI is the time's CI inverted, so its relative
half-width is ``h / (1 - h²)`` for a time half-width ``h`` (2.0008% for 2%).

:func:`throughput_measurement` and :func:`latency_measurement` turn a :class:`TimingResult` into the
:class:`~accelnas.core.records.Measurement` records plugins return.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from accelnas.core.records import UNITS, Measurement, MeasureSettings


@dataclass
class TimingResult:
    """Samples in seconds per call and their statistics."""

    samples: list[float]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    precision: float
    precision_reached: bool
    warmup_calls: int
    warmup_seconds: float
    steady: bool
    timed_seconds: float

    @property
    def relative_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2 / self.mean


_EXACT_T_DOF = 200


@lru_cache(maxsize=512)
def _t_exact(dof: int, confidence: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, dof))


def t_quantile(dof: int, confidence: float = 0.95) -> float:
    """Two-sided Student-t critical value (exact up to 200 degrees of freedom, then a 3-term expansion)."""
    if dof <= _EXACT_T_DOF:
        return _t_exact(dof, confidence)
    z = _t_exact(10**9, confidence)
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def mean_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, std, ci_low, ci_high) of the mean of ``samples``."""
    n = len(samples)
    mean = statistics.fmean(samples)
    if n < 2:
        return mean, 0.0, mean, mean
    std = statistics.stdev(samples)
    half = t_quantile(n - 1, confidence) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


class _Running:
    """Welford's running mean and variance: O(1) per sample for the stopping rule."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def half_width(self, confidence: float) -> float:
        if self.n < 2:
            return math.inf
        return t_quantile(self.n - 1, confidence) * math.sqrt(self.m2 / (self.n - 1) / self.n)


def measure(
    fn: Callable[[], Any],
    *,
    precision: float = 0.02,
    max_seconds: float = 30.0,
    warmup_seconds: float = 5.0,
    min_samples: int = 20,
    min_seconds: float = 0.25,
    max_samples: int = 1_000_000,
    min_warmup: int = 3,
    window: int = 5,
    steady_tolerance: float = 0.05,
    confidence: float = 0.95,
    clock: Callable[[], float] = time.perf_counter,
) -> TimingResult:
    """Time ``fn`` (one call = one sample) with warm-up and adaptive stopping."""
    # warm-up
    start = clock()
    calls = 0
    for _ in range(min_warmup):
        fn()
        calls += 1
    steady = False
    previous: float | None = None
    while clock() - start < warmup_seconds:
        t0 = clock()
        done = 0
        while done < window and clock() - start < warmup_seconds:
            fn()
            done += 1
        calls += done
        if done < window:  # budget ended inside a window
            break
        current = (clock() - t0) / window
        if previous is not None and abs(current - previous) <= steady_tolerance * previous:
            steady = True
            break
        previous = current
    warmup_elapsed = clock() - start
    t_quantile(max(min_samples - 1, 1), confidence)  # load scipy before the timed phase

    # timed phase
    samples: list[float] = []
    running = _Running()
    reached = False
    span = min(min_seconds, max_seconds / 4)  # the least timed duration before the rule may stop
    begin = clock()
    while True:
        t0 = clock()
        fn()
        elapsed = clock() - t0
        samples.append(elapsed)
        running.add(elapsed)
        n = len(samples)
        if n >= min_samples and running.half_width(confidence) <= precision * running.mean and clock() - begin >= span:
            reached = True
            break
        # the budget ends sampling once there is a spread to report (a call longer than the budget
        # would otherwise leave one sample and a zero-width interval)
        if n >= max_samples or (n >= 2 and clock() - begin >= max_seconds):
            break
    timed = clock() - begin
    mean, std, low, high = mean_ci(samples, confidence)
    return TimingResult(samples, mean, std, low, high, precision, reached, calls, warmup_elapsed, steady, timed)


def measure_for(fn: Callable[[], Any], settings: MeasureSettings) -> TimingResult:
    """:func:`measure` with the precision, budgets and minimum samples a campaign's settings ask for."""
    return measure(
        fn,
        precision=settings.precision,
        max_seconds=settings.max_seconds,
        warmup_seconds=settings.warmup_seconds,
        min_samples=settings.min_samples,
    )


def _common_extra(result: TimingResult) -> dict[str, Any]:
    return {
        "warmup_calls": result.warmup_calls,
        "warmup_seconds": round(result.warmup_seconds, 4),
        "warmup_steady": result.steady,
        "timed_seconds": round(result.timed_seconds, 4),
        "n_samples": len(result.samples),
        "relative_ci": result.relative_half_width,
        "requested_precision": result.precision,
    }


# fewest samples for a percentile that is not just the smallest or largest sample
PERCENTILE_MIN_SAMPLES = {0.5: 1, 0.9: 10, 0.99: 100}


def _time_ci_low(result: TimingResult) -> float:
    """The lower end of the mean time's interval, never below the fastest call (a mean cannot be)."""
    return max(result.ci_low, min(result.samples))


def throughput_measurement(
    result: TimingResult, *, batch_size: int, input_size: int, provenance: dict[str, Any] | None = None
) -> Measurement:
    """Images/s at ``batch_size`` from per-batch times: batch / mean time, CI inverted from the times.

    The time interval's lower end is never below the fastest call (few scattered samples reach zero).
    """
    mean = batch_size / result.mean
    rel_std = result.std / result.mean
    low = batch_size / result.ci_high
    high = batch_size / _time_ci_low(result)
    extra = _common_extra(result) | {"batch_ms_mean": result.mean * 1e3}
    return Measurement(
        metric="throughput",
        unit=UNITS["throughput"],
        mean=mean,
        std=mean * rel_std,
        ci_low=low,
        ci_high=high,
        samples=[batch_size / s for s in result.samples],
        batch_size=batch_size,
        input_size=input_size,
        precision_reached=result.precision_reached,
        extra=extra,
        provenance=dict(provenance or {}),
    ).validate()


def latency_measurement(
    result: TimingResult, *, input_size: int, batch_size: int = 1, provenance: dict[str, Any] | None = None
) -> Measurement:
    """Milliseconds per inference with p50/p90/p99, the minimum and the maximum in ``extra``.

    A percentile is given where the samples can tell it from the extremes (p90 from 10 samples, p99
    from 100), else None. The time interval's lower end is never below the fastest call.
    """
    ms = [s * 1e3 for s in result.samples]
    ordered = sorted(ms)

    def pct(q: float) -> float | None:
        if len(ordered) < PERCENTILE_MIN_SAMPLES[q]:
            return None
        pos = (len(ordered) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    extra = _common_extra(result) | {
        "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "min": ordered[0], "max": ordered[-1]
    }  # fmt: skip
    return Measurement(
        metric="latency",
        unit=UNITS["latency"],
        mean=result.mean * 1e3,
        std=result.std * 1e3,
        ci_low=_time_ci_low(result) * 1e3,
        ci_high=result.ci_high * 1e3,
        samples=ms,
        batch_size=batch_size,
        input_size=input_size,
        precision_reached=result.precision_reached,
        extra=extra,
        provenance=dict(provenance or {}),
    ).validate()
