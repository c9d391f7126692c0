"""benchmarks/sample_efficiency.py fits what the default build fits, noise weighting included."""

from __future__ import annotations

import numpy as np
from conftest import load_benchmark

from accelnas.core.model import count_macs
from accelnas.core.space import sample


def _load():
    return load_benchmark("sample_efficiency")


def test_default_fit_weights_rows_by_their_measurement_noise():
    """With the TPUv3 recipe, rows measured badly (large std) hardly move the fit."""
    bench = _load()
    archs = sample(700, 3)
    truth = np.array([4e5 / (count_macs(a, 224) / 1e6) for a in archs])
    train, test = archs[:600], archs[600:]
    rng = np.random.default_rng(0)
    bad = rng.random(600) < 0.25
    y = np.where(bad, 0.6, 1.0) * truth[:600]
    std = np.where(bad, 0.3, 0.005) * y
    errors = {}
    for name, stds in {"reported": std, "uniform": np.full(600, 0.01) * y}.items():
        model = bench.fit_default("tpuv3/anb", "throughput", train, y, stds, np.full(600, np.nan), seed=0)
        errors[name] = np.sqrt(np.mean((model.predict(test) / truth[600:] - 1.0) ** 2))
    assert errors["reported"] < 0.5 * errors["uniform"], errors
