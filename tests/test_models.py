"""Every surrogate family: fit, predict, parameters, and a lossless save/load without pickle."""

import numpy as np
import pytest

from accelnas.core.model import count_macs
from accelnas.core.space import sample
from accelnas.surrogates import artifact
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.metrics import regression_metrics
from accelnas.surrogates.models import FAMILIES, SeedEnsemble, make

TRAIN, TEST = sample(300, 0), sample(80, 1, exclude={a.id for a in sample(300, 0)})
FAST = {
    "xgboost": {"n_estimators": 150},
    "lightgbm": {"n_estimators": 150},
    "random_forest": {"n_estimators": 40},
    "svr": {},
    "additive": {},
    "hybrid": {"n_estimators": 100},
}


def _y(archs):
    """A latency-like target: additive over layers (MACs at 64 px) plus a per-layer overhead."""
    return np.array([count_macs(a, 64) / 1e6 + 0.05 * a.num_layers for a in archs])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_fits_ranks_and_round_trips(family, tmp_path):
    model = make(family, **FAST[family])
    model.fit(TRAIN, _y(TRAIN))
    pred = model.predict(TEST)
    m = regression_metrics(_y(TEST), pred)
    assert m["kendall_tau"] > 0.75, m
    assert model.get_params()["seed"] == 0
    saved = artifact.save(SurrogateArtifact(model, "sim/x", "latency", "ms"), tmp_path / family)
    assert not list(saved.glob("*.pkl"))
    loaded = artifact.load(saved)
    np.testing.assert_allclose(loaded.predict(TEST), pred, rtol=1e-9, atol=1e-9)


def test_additive_model_recovers_an_additive_target():
    model = make("additive").fit(TRAIN, _y(TRAIN))
    m = regression_metrics(_y(TEST), model.predict(TEST))
    assert m["r2"] > 0.99 and m["kendall_tau"] > 0.97


def test_transforms():
    y = _y(TRAIN)
    for transform in ("log", "inverse", "none"):
        model = make("xgboost", transform=transform, n_estimators=50).fit(TRAIN, y)
        assert np.all(model.predict(TEST) > 0)
    with pytest.raises(ValueError, match="positive"):
        make("xgboost", transform="log").fit(TRAIN[:3], [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="unknown parameter"):
        make("svr", depth=3)


def test_seed_ensemble_mean_and_spread(tmp_path):
    ensemble = SeedEnsemble(make("xgboost", n_estimators=60, subsample=0.7), n_members=3).fit(TRAIN, _y(TRAIN))
    mean, std = ensemble.predict_dist(TEST)
    assert mean.shape == std.shape == (len(TEST),)
    assert np.all(std >= 0) and np.any(std > 0)
    assert ensemble.get_params()["base__n_estimators"] == 60
    loaded = artifact.load(artifact.save(SurrogateArtifact(ensemble, "sim/x", "latency"), tmp_path / "e"))
    m2, s2 = loaded.predict_dist(TEST)
    np.testing.assert_allclose(m2, mean, rtol=1e-9)
    np.testing.assert_allclose(s2, std, rtol=1e-6, atol=1e-12)


def test_extrapolation_is_bounded():
    """A model fitted on few architectures must not predict absurd values far from its data."""
    few = TRAIN[:12]
    y = 1e5 / np.array([count_macs(a, 224) / 1e6 for a in few])  # a throughput-like target
    model = make("additive", transform="inverse").fit(few, y)
    pred = model.predict(TEST)
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)
    assert pred.max() <= 10 * y.max() and pred.min() >= y.min() / 10


@pytest.mark.parametrize("family", ["additive", "hybrid"])
def test_sample_weight_discounts_noisy_rows(family):
    """Rows whose targets are badly corrupted hurt less when their weight is small."""
    y = _y(TRAIN)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(y)) < 0.3
    corrupted = np.where(noisy, y * rng.uniform(0.3, 3.0, len(y)), y)
    weight = np.where(noisy, 1e-4, 1.0)
    plain = make(family, **FAST[family]).fit(TRAIN, corrupted)
    weighted = make(family, **FAST[family]).fit(TRAIN, corrupted, sample_weight=weight)
    err = {name: np.abs(m.predict(TEST) - _y(TEST)).mean() for name, m in (("plain", plain), ("weighted", weighted))}
    assert err["weighted"] < 0.7 * err["plain"], err


def test_sample_weight_validation():
    model = make("additive")
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(TRAIN, _y(TRAIN), sample_weight=np.ones(len(TRAIN) - 1))
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(TRAIN, _y(TRAIN), sample_weight=-np.ones(len(TRAIN)))
    with pytest.raises(ValueError, match="all zero"):
        model.fit(TRAIN, _y(TRAIN), sample_weight=np.zeros(len(TRAIN)))
    uniform = make("additive").fit(TRAIN, _y(TRAIN), sample_weight=np.full(len(TRAIN), 3.0)).predict(TEST)
    np.testing.assert_allclose(uniform, make("additive").fit(TRAIN, _y(TRAIN)).predict(TEST), rtol=1e-9)
