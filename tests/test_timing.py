import itertools
import math

import pytest

from accelnas.core.records import Measurement
from accelnas.core.timing import (
    TimingResult,
    latency_measurement,
    mean_ci,
    measure,
    t_quantile,
    throughput_measurement,
)


class FakeClock:
    """A clock that advances by the durations a fake workload declares."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)

    def __call__(self):
        return self.now

    def work(self):
        self.now += next(self.durations)


def test_stops_as_soon_as_precision_is_reached():
    # constant 10 ms calls: the CI collapses, so the timed phase stops at min_samples (and 0.05 s)
    clock = FakeClock(itertools.repeat(0.010))
    r = measure(clock.work, precision=0.02, max_seconds=100, warmup_seconds=1, min_samples=10, min_seconds=0.05,
                clock=clock)  # fmt: skip
    assert r.precision_reached and len(r.samples) == 10
    assert r.mean == pytest.approx(0.010) and r.steady


def test_calls_are_timed_for_at_least_min_seconds_or_a_quarter_of_the_budget():
    clock = FakeClock(itertools.repeat(0.001))  # precise from the start: only the duration holds the rule back
    r = measure(clock.work, precision=0.02, max_seconds=100, warmup_seconds=0, min_samples=10, clock=clock)
    assert r.precision_reached and len(r.samples) == 250 and r.timed_seconds == pytest.approx(0.25)
    clock = FakeClock(itertools.repeat(0.001))
    short = measure(clock.work, precision=0.02, max_seconds=0.2, warmup_seconds=0, min_samples=10, clock=clock)
    assert short.precision_reached and len(short.samples) == 50  # a quarter of a 0.2 s budget


def test_rare_slow_calls_are_spanned_before_the_rule_stops():
    # 1 ms calls, every 40th one 5 ms (a core taken by another process): the long-run mean is 1.1 ms
    pattern = [0.001] * 39 + [0.005]
    clock = FakeClock(itertools.cycle(pattern))
    r = measure(clock.work, precision=0.02, max_seconds=100, warmup_seconds=0, min_samples=20, clock=clock)
    assert r.precision_reached and r.ci_low <= 0.0011 <= r.ci_high
    clock = FakeClock(itertools.cycle(pattern))
    hasty = measure(clock.work, precision=0.02, max_seconds=100, warmup_seconds=0, min_samples=20, min_seconds=0,
                    clock=clock)  # fmt: skip
    assert len(hasty.samples) < 40 and hasty.ci_high < 0.0011  # stopped before the first slow call


def test_noisy_workload_needs_more_samples_and_reaches_precision():
    pattern = [0.008, 0.012] * 10_000
    clock = FakeClock(itertools.cycle(pattern))
    r = measure(clock.work, precision=0.02, max_seconds=100, warmup_seconds=0.5, min_samples=10, clock=clock)
    assert r.precision_reached and len(r.samples) > 10
    assert r.relative_half_width <= 0.02
    # one more sample fewer would not have been enough
    _, _, low, high = mean_ci(r.samples[:-1])
    assert (high - low) / 2 > 0.02 * sum(r.samples[:-1]) / (len(r.samples) - 1)


def test_budget_ends_before_precision():
    pattern = [0.001, 0.1]
    clock = FakeClock(itertools.cycle(pattern))
    r = measure(clock.work, precision=0.001, max_seconds=1.0, warmup_seconds=0.1, min_samples=5, clock=clock)
    assert not r.precision_reached
    assert r.timed_seconds >= 1.0
    assert r.ci_low < r.mean < r.ci_high


def test_warmup_runs_until_steady():
    # slow first calls (compilation, caches), then steady
    durations = itertools.chain([1.0, 0.5, 0.2, 0.1, 0.05], itertools.repeat(0.01))
    clock = FakeClock(durations)
    r = measure(clock.work, precision=0.05, max_seconds=10, warmup_seconds=30, min_samples=5, clock=clock)
    assert r.steady and r.warmup_calls >= 3
    assert max(r.samples) == pytest.approx(0.01)


def test_warmup_budget_is_an_upper_bound():
    clock = FakeClock(itertools.cycle([0.3, 0.1]))  # never steady
    r = measure(clock.work, precision=0.5, max_seconds=1, warmup_seconds=2.0, min_samples=2, clock=clock)
    assert not r.steady
    assert r.warmup_seconds <= 2.0 + 0.3  # at most one call past the budget


def test_t_quantile_expansion_matches_scipy():
    from scipy.stats import t

    for dof in (1, 9, 200, 201, 350, 1000, 10_000):
        assert t_quantile(dof) == pytest.approx(t.ppf(0.975, dof), rel=1e-6)


def test_mean_ci_matches_student_t():
    samples = [1.0, 2.0, 3.0, 4.0]
    mean, std, low, high = mean_ci(samples)
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))
    assert (high - low) / 2 == pytest.approx(3.182446 * std / 2, rel=1e-5)


def _result(samples):
    clock = FakeClock(itertools.cycle(samples))
    return measure(
        clock.work,
        precision=0.5,
        max_seconds=1,
        warmup_seconds=0,
        min_samples=len(samples),
        max_samples=len(samples),
        clock=clock,
    )


def test_throughput_and_latency_records():
    r = _result([0.010, 0.012, 0.011, 0.009])
    tp = throughput_measurement(r, batch_size=8, input_size=64)
    assert tp.unit == "images/s" and tp.batch_size == 8
    assert tp.mean == pytest.approx(8 / r.mean)
    assert tp.ci_low < tp.mean < tp.ci_high
    lat = latency_measurement(r, input_size=64)
    assert lat.unit == "ms" and lat.batch_size == 1
    assert lat.mean == pytest.approx(r.mean * 1e3)
    assert lat.extra["min"] == pytest.approx(9.0) and lat.extra["p50"] == pytest.approx(10.5)
    assert lat.extra["max"] == pytest.approx(12.0)
    assert lat.extra["p90"] is None and lat.extra["p99"] is None  # 4 samples cannot tell them from the maximum
    times = [0.001 * (1 + i) for i in range(100)]
    mean, std, low, high = mean_ci(times)
    many = latency_measurement(TimingResult(times, mean, std, low, high, 0.02, False, 3, 0.1, True, 5.0), input_size=64)
    assert many.extra["p90"] == pytest.approx(90.1) and many.extra["p99"] == pytest.approx(99.01)


def test_a_call_longer_than_the_budget_still_gives_two_samples():
    clock = FakeClock(itertools.repeat(5.0))
    r = measure(clock.work, precision=0.02, max_seconds=3.0, warmup_seconds=0, min_samples=20, clock=clock)
    assert len(r.samples) == 2 and not r.precision_reached


def test_an_interval_reaching_zero_is_bounded_by_the_fastest_call():
    r = _result([1.0, 3.0])  # t(1) = 12.7: the time interval of the mean reaches far below zero
    assert r.ci_low < 0
    lat = latency_measurement(r, input_size=64)
    assert lat.ci_low == pytest.approx(1000.0) and lat.ci_high == pytest.approx(r.ci_high * 1e3)
    tp = throughput_measurement(r, batch_size=8, input_size=64)
    assert tp.ci_high == pytest.approx(8.0) and tp.ci_low == pytest.approx(8 / r.ci_high)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mean": float("nan")}, "mean"),
        ({"mean": -1.0}, "positive"),
        ({"unit": "s"}, "unit"),
        ({"samples": []}, "samples"),
        ({"ci_low": 50.0}, "confidence"),
        ({"metric": "energy"}, "metric"),
        ({"batch_size": 0}, "batch_size"),
        ({"std": -0.1}, "std"),
    ],
)
def test_measurement_validation(change, message):
    fields = dict(
        metric="latency",
        unit="ms",
        mean=10.0,
        std=1.0,
        ci_low=9.0,
        ci_high=11.0,
        samples=[10.0],
        batch_size=1,
        input_size=64,
        precision_reached=True,
    )
    Measurement(**fields).validate()
    with pytest.raises(ValueError, match=message):
        Measurement(**(fields | change)).validate()


def test_coverage_benchmark_shows_what_the_minimum_duration_buys(capsys):
    from conftest import load_benchmark

    script = load_benchmark("timing_coverage")
    hasty = script.coverage("2% of calls 5x slower", 60, 0.001, 0.0)
    spanning = script.coverage("2% of calls 5x slower", 60, 0.001, 0.25)
    assert hasty["coverage"] < 0.6 < 0.85 < spanning["coverage"]  # 0.34 and 0.93 over 1,000 runs
    assert hasty["median_samples"] == 20 and spanning["median_samples"] > 250
    assert script.main(["--runs", "5", "--min-seconds", "0.25"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(script.CASES)
