"""GPU timing results: CUDA-event samples through the core statistics, trtexec-style extras."""

import json
import math

import pytest

from accelnas.core.timing import TimingResult, mean_ci
from accelnas.plugins.cuda_trt.gpu_timing import ENQUEUE_BOUND_RATIO, gpu_extra, gpu_measurement, gpu_result


def _host(samples, precision=0.02, reached=True) -> TimingResult:
    mean, std, low, high = mean_ci(samples)
    return TimingResult(samples, mean, std, low, high, precision, reached, 12, 0.5, True, 1.0)


def _series(base: float, n: int, spread: float) -> list[float]:
    return [base * (1 + spread * ((i * 7919) % 11 - 5) / 5) for i in range(n)]


WARMUP = [0.5, 0.4, 0.3]  # CUDA-event times of warm-up calls, which are not samples


def test_gpu_samples_replace_host_samples_with_core_statistics():
    host = _host(_series(0.0110, 40, 0.01))
    gpu = _series(0.0100, 40, 0.005)
    result = gpu_result(host, WARMUP + gpu, [0.001] * 43, min_samples=20)
    assert result.samples == gpu
    assert (result.mean, result.std, result.ci_low, result.ci_high) == pytest.approx(mean_ci(gpu))
    assert result.precision_reached and result.warmup_calls == host.warmup_calls
    assert result.timed_seconds == host.timed_seconds


def test_precision_is_judged_on_the_gpu_samples():
    host = _host(_series(0.011, 30, 0.001))
    noisy = _series(0.010, 30, 0.5)
    assert not gpu_result(host, noisy, [0.001] * 30, min_samples=20).precision_reached
    few = _series(0.010, 10, 0.001)
    assert not gpu_result(_host(_series(0.011, 10, 0.001)), few, [0.001] * 10, min_samples=20).precision_reached


def test_mismatched_or_bad_event_times_are_rejected():
    host = _host(_series(0.011, 20, 0.01))
    with pytest.raises(ValueError, match="only 5 GPU"):
        gpu_result(host, [0.01] * 5, [0.001] * 20, min_samples=2)
    with pytest.raises(ValueError, match="non-positive"):
        gpu_result(host, [0.01] * 19 + [0.0], [0.001] * 20, min_samples=2)


def test_throughput_from_gpu_time_with_host_figures():
    host = _host(_series(0.0112, 40, 0.01))
    gpu = gpu_result(host, _series(0.0100, 40, 0.002), [0.0004] * 40, min_samples=20)
    m = gpu_measurement(host, gpu, [0.0004] * 40, metric="throughput", batch=256, input_size=224, provenance={"a": 1})
    assert m.metric == "throughput" and m.unit == "images/s" and m.batch_size == 256
    assert m.mean == pytest.approx(256 / gpu.mean) and m.ci_low <= m.mean <= m.ci_high
    e = m.extra
    assert e["timer"] == "cuda-events"
    assert e["gpu_compute_ms_mean"] == pytest.approx(gpu.mean * 1e3)
    assert e["host_wall_ms_mean"] == pytest.approx(host.mean * 1e3)
    assert e["host_overhead_ms"] == pytest.approx((host.mean - gpu.mean) * 1e3)
    assert e["host_images_per_s"] == pytest.approx(256 / host.mean) and e["host_images_per_s"] < m.mean
    assert e["enqueue_ms_mean"] == pytest.approx(0.4)
    assert e["gpu_compute_ms_min"] <= e["gpu_compute_ms_p50"] <= e["gpu_compute_ms_p99"] <= e["gpu_compute_ms_max"]
    assert not e["enqueue_bound"] and not e["gpu_compute_unstable"] and e["warnings"] == []
    assert m.provenance == {"a": 1}
    json.dumps(m.to_dict())


def test_latency_percentiles_come_from_gpu_time():
    host = _host(_series(0.0021, 30, 0.01))
    times = _series(0.0015, 30, 0.01)
    gpu = gpu_result(host, times, [0.0002] * 30, min_samples=20)
    m = gpu_measurement(host, gpu, [0.0002] * 30, metric="latency", batch=1, input_size=224, provenance={})
    assert m.unit == "ms" and m.batch_size == 1
    assert m.mean == pytest.approx(1e3 * sum(times) / len(times))
    assert m.extra["p50"] == pytest.approx(m.extra["gpu_compute_ms_p50"])
    assert m.extra["min"] == pytest.approx(min(times) * 1e3)
    with pytest.raises(ValueError, match="unknown metric"):
        gpu_measurement(host, gpu, [0.0002] * 30, metric="power", batch=1, input_size=224, provenance={})


def test_enqueue_bound_and_unstable_warnings():
    host = _host(_series(0.0012, 30, 0.01))
    gpu = gpu_result(host, _series(0.0010, 30, 0.001), [0.0] * 30, min_samples=2)
    slow_enqueue = [ENQUEUE_BOUND_RATIO * gpu.mean * 1.01] * 30
    e = gpu_extra(host, gpu, slow_enqueue, batch=1)
    assert e["enqueue_bound"] and "enqueue time" in e["warnings"][0]
    fast_enqueue = [ENQUEUE_BOUND_RATIO * gpu.mean * 0.9] * 30
    assert not gpu_extra(host, gpu, fast_enqueue, batch=1)["enqueue_bound"]
    shaky = gpu_result(host, _series(0.0010, 30, 0.2), [0.0] * 30, min_samples=2)
    e = gpu_extra(host, shaky, [0.0001] * 30, batch=1)
    assert e["gpu_compute_unstable"] and e["gpu_compute_cv"] > 0.01
    assert any("unstable" in w for w in e["warnings"]) and math.isfinite(e["gpu_compute_cv"])
