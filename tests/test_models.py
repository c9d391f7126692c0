"""Every surrogate family: fit, predict, parameters, and a lossless save/load without pickle."""

import hashlib
import json
import logging

import numpy as np
import pytest
from sklearn.base import clone

from accelnas.core.errors import SurrogateError
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
    "gp": {"steps": 60, "fit_subset": 200},  # fewer inducing points than rows: the sparse posterior
    "blend": {"members": [{"family": "additive", "params": {}}, {"family": "gp", "params": {"steps": 40}}]},
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
    state, _ = ensemble.to_state()  # the saved parameters keep the format of earlier artifacts
    assert state["params"] == {"n_members": 3, "base_family": "xgboost"} | {
        f"base__{k}": v for k, v in ensemble.base.get_params().items()
    }
    loaded = artifact.load(artifact.save(SurrogateArtifact(ensemble, "sim/x", "latency"), tmp_path / "e"))
    m2, s2 = loaded.predict_dist(TEST)
    np.testing.assert_allclose(m2, mean, rtol=1e-9)
    np.testing.assert_allclose(s2, std, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("family", ["hybrid", "xgboost", "blend"])
def test_seed_ensemble_encodes_once_and_matches_members_fitted_alone(family, monkeypatch):
    """Members share one encoding of the rows; each equals the same family fitted alone with its seed."""
    params = FAST[family] | ({"subsample": 0.7} if family in ("hybrid", "xgboost") else {})
    y = _y(TRAIN)
    calls = []
    cls = type(make(family))
    original = cls.features
    monkeypatch.setattr(cls, "features", lambda self, X: calls.append(1) or original(self, X))
    ensemble = SeedEnsemble(make(family, seed=4, **params), n_members=2).fit(TRAIN, y)
    ensemble.predict(TEST)
    if family != "blend":  # a blend's rows are architectures; its members encode them
        assert len(calls) == 2
    monkeypatch.setattr(cls, "features", original)
    alone = [make(family, seed=seed, **params).fit(TRAIN, y).predict(TEST) for seed in (4, 5)]
    np.testing.assert_allclose(ensemble.predict(TEST), np.mean(alone, axis=0), rtol=1e-9)
    assert not np.allclose(*alone) or family == "blend"


def test_extrapolation_is_bounded():
    """A model fitted on few architectures must not predict absurd values far from its data."""
    few = TRAIN[:12]
    y = 1e5 / np.array([count_macs(a, 224) / 1e6 for a in few])  # a throughput-like target
    model = make("additive", transform="inverse").fit(few, y)
    pred = model.predict(TEST)
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)
    assert pred.max() <= 10 * y.max() and pred.min() >= y.min() / 10


@pytest.mark.parametrize("family", ["hybrid", "xgboost"])
def test_untransformed_positive_targets_are_never_predicted_negative(family):
    """One disturbed measurement widens the range a lot; a latency must still not come out negative."""
    few = TRAIN[:12]
    y = np.array([count_macs(a, 224) / 1e8 for a in few])
    y[0] *= 100
    pred = make(family, transform="none", **FAST.get(family, {})).fit(few, y).predict(sample(2000, seed=2))
    assert pred.min() >= y.min() / 2


@pytest.mark.parametrize("family", ["additive", "hybrid", "gp"])
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


def _smooth(archs):
    """An accuracy-like target: smooth and saturating in the network's size."""
    return np.array([75.0 + 3.0 * np.tanh(count_macs(a, 224) / 4e8 - 1.0) + 0.1 * a.num_layers for a in archs])


def test_gp_sparse_posterior_keeps_up_with_the_exact_one():
    y = _smooth(TRAIN)
    exact = make("gp", transform="none", steps=80, fit_subset=len(TRAIN)).fit(TRAIN, y)
    sparse = make("gp", transform="none", steps=80, fit_subset=120).fit(TRAIN, y)
    assert len(exact.points_) == len(TRAIN) and len(sparse.points_) == 120
    scores = {
        name: regression_metrics(_smooth(TEST), m.predict(TEST)) for name, m in [("exact", exact), ("sparse", sparse)]
    }

    assert scores["exact"]["r2"] > 0.97, scores
    assert scores["sparse"]["r2"] > scores["exact"]["r2"] - 0.02, scores
    # the exact posterior mean nearly interpolates the (noise-free) training targets
    assert np.abs(exact.predict(TRAIN[:50]) - y[:50]).max() < 0.2


def test_gp_is_reproducible_and_validates_its_parameters():
    y = _smooth(TRAIN)
    a = make("gp", transform="none", steps=30, fit_subset=100, seed=3).fit(TRAIN, y).predict(TEST)
    b = make("gp", transform="none", steps=30, fit_subset=100, seed=3).fit(TRAIN, y).predict(TEST)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="fit_subset"):
        make("gp", fit_subset=1).fit(TRAIN, y)


def test_gp_points_file_of_the_wrong_shape_is_refused(tmp_path):
    import io

    model = make("gp", transform="none", steps=20, fit_subset=100).fit(TRAIN, _smooth(TRAIN))
    saved = artifact.save(SurrogateArtifact(model, "sim/x", "accuracy"), tmp_path / "gp")
    points = artifact.model_file(saved, "gp-points.npy")
    table = np.load(points, allow_pickle=False)
    buffer = io.BytesIO()
    np.save(buffer, table[:, :-2], allow_pickle=False)
    points.write_bytes(buffer.getvalue())
    meta = json.loads((saved / "surrogate.json").read_text())
    meta["files"]["gp-points.npy"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (saved / "surrogate.json").write_text(json.dumps(meta))
    with pytest.raises(SurrogateError, match="points file has shape"):
        artifact.load(saved)


def test_blend_is_the_weighted_mean_of_its_members():
    y = _y(TRAIN)
    members = [
        {"family": "additive", "params": {"transform": "log"}},
        {"family": "xgboost", "params": {"n_estimators": 80}},
    ]
    blend = make("blend", members=members, weights=[3, 1]).fit(TRAIN, y)
    parts = blend.member_predictions(TEST)
    additive = make("additive", transform="log").fit(TRAIN, y).predict(TEST)
    np.testing.assert_allclose(parts[0], additive, rtol=1e-12)
    np.testing.assert_allclose(blend.predict(TEST), 0.75 * parts[0] + 0.25 * parts[1], rtol=1e-12)
    assert blend.get_params()["members"] == members
    even = make("blend", members=members).fit(TRAIN, y)
    mean, spread = SurrogateArtifact(even, "sim/x", "latency").predict_dist(TEST)
    a, b = even.member_predictions(TEST)
    np.testing.assert_allclose(mean, (a + b) / 2, rtol=1e-12)
    np.testing.assert_allclose(spread, np.abs(a - b) / 2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"members": [{"family": "blend", "params": {}}]}, "family other than blend"),
        ({"members": [{"params": {}}]}, "family other than blend"),
        ({"members": [{"family": "additive", "params": {}, "extra": 1}]}, "family other than blend"),
        ({"members": [{"family": "additive"}], "weights": [1, 2]}, "one finite, non-negative weight per member"),
        ({"members": [{"family": "additive"}], "weights": [0]}, "not all zero"),
        ({"members": [{"family": "additive"}], "weights": [float("nan")]}, "finite"),
        ({"members": [{"family": "additive", "params": {"depth": 3}}]}, "unknown parameter 'depth'"),
        ({"members": [{"family": "additive", "params": [1]}]}, "family other than blend"),
        ({"members": {"family": "additive"}}, "list of member specifications"),
    ],
)
def test_blend_validates_its_members(params, error):
    with pytest.raises(ValueError, match=error):
        make("blend", **params)


def test_blend_needs_members_and_architectures():
    with pytest.raises(ValueError, match="at least one member"):
        make("blend").fit(TRAIN, _y(TRAIN))
    with pytest.raises(TypeError, match="needs architectures"):
        make("blend", members=[{"family": "additive"}]).fit(np.zeros((4, 28)), np.ones(4))


def test_blend_member_with_an_unknown_encoding_is_refused(tmp_path):
    blend = make("blend", members=[{"family": "additive", "params": {}}]).fit(TRAIN, _y(TRAIN))
    saved = artifact.save(SurrogateArtifact(blend, "sim/x", "latency"), tmp_path / "b")
    meta = json.loads((saved / "surrogate.json").read_text())
    meta["model"]["state"]["members"][0]["params"]["encoding"] = "mystery"
    (saved / "surrogate.json").write_text(json.dumps(meta))
    with pytest.raises(SurrogateError, match="unknown feature encoding 'mystery'"):
        artifact.load(saved)


def test_ensembles_saved_with_prefixed_member_states_still_load(tmp_path):
    """Earlier artifacts named each member's file inside its state ("member0-xgboost.json")."""
    ensemble = SeedEnsemble(make("xgboost", n_estimators=30), n_members=2).fit(TRAIN, _y(TRAIN))
    saved = artifact.save(SurrogateArtifact(ensemble, "sim/x", "latency"), tmp_path / "e")
    meta = json.loads((saved / "surrogate.json").read_text())
    del meta["model_sha256"]  # nor did they checksum the state
    for i, member in enumerate(meta["model"]["members"]):
        member["state"]["model_file"] = f"member{i}-xgboost.json"
    (saved / "surrogate.json").write_text(json.dumps(meta))
    np.testing.assert_allclose(artifact.load(saved).predict(TEST), ensemble.predict(TEST), rtol=1e-9)


def test_gp_fast_kernel_path_agrees_with_the_direct_one(monkeypatch):
    from accelnas.surrogates.models import gp

    model = make("gp", transform="none", steps=30, fit_subset=150).fit(TRAIN, _smooth(TRAIN))
    far = model.features(TEST) * 3.0  # also rows far outside the data
    fast = model.predict(np.vstack([model.features(TEST), far]))
    monkeypatch.setattr(gp, "_EXP_SAFE", -np.inf)  # force the direct form
    direct = model.predict(np.vstack([model.features(TEST), far]))
    np.testing.assert_allclose(fast, direct, rtol=1e-9, atol=1e-9)


def _protocol_model(family):
    if family == "ensemble":
        return SeedEnsemble(make("xgboost", n_estimators=20, subsample=0.7), n_members=2)
    return make(family, **FAST[family])


def _shown(params):
    """Parameters compared by value (a seed ensemble's base by its own parameters)."""
    return {name: repr(value) for name, value in params.items()}


@pytest.mark.parametrize("family", [*sorted(FAMILIES), "ensemble"])
def test_every_family_follows_the_scikit_learn_parameter_protocol(family):
    model = _protocol_model(family)
    before = _shown(model.get_params())
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model and _shown(copy.get_params()) == before
    assert model.set_params(**model.get_params()) is model and _shown(model.get_params()) == before
    assert model.set_params(**model.get_params(deep=False)) is model and _shown(model.get_params()) == before
    prefix = "base__" if family == "ensemble" else ""
    model.set_params(**{prefix + "seed": 7})
    assert model.get_params()[prefix + "seed"] == 7 and clone(model).get_params()[prefix + "seed"] == 7
    model.set_params(**{prefix + "seed": 0})
    refused = [({"encoding": "nope"}, "unknown feature encoding 'nope'"), ({"transform": "sqrt"}, "transform"),
               ({"depth": 3}, "unknown parameter 'depth'")]  # fmt: skip
    for bad, error in refused:
        if family != "ensemble":  # the constructor refuses it too
            with pytest.raises(ValueError, match=error):
                type(model)(**(model.get_params(deep=False) | bad))
        # refused with a valid change alongside, which is not applied either
        with pytest.raises(ValueError, match=error):
            model.set_params(**{prefix + "seed": 3}, **{prefix + k: v for k, v in bad.items()})
        assert _shown(model.get_params()) == before


def test_seed_ensemble_parameters_are_validated_at_once():
    ensemble = _protocol_model("ensemble")
    before = _shown(ensemble.get_params())
    for bad, error in [({"n_members": 0}, "n_members"), ({"n_members": 2.5}, "n_members"),
                       ({"base": "xgboost"}, "base"), ({"members": 3}, "unknown parameter 'members'")]:  # fmt: skip
        with pytest.raises(ValueError, match=error):
            ensemble.set_params(base__max_depth=2, **bad)
        assert _shown(ensemble.get_params()) == before
    with pytest.raises(ValueError, match="n_members"):
        SeedEnsemble(make("additive"), n_members=0)
    other = make("svr")
    assert ensemble.set_params(base=other, base__C=3.0, n_members=4) is ensemble
    assert ensemble.base is other and other.C == 3.0 and ensemble.n_members == 4


def test_blend_set_params_validates_its_members_like_the_constructor():
    blend = make("blend", members=[{"family": "additive"}, {"family": "svr"}], weights=[1, 3])
    before = _shown(blend.get_params())
    for bad, error in [({"members": [{"family": "blend"}]}, "family other than blend"),
                       ({"members": [{"family": "additive"}]}, "one finite, non-negative weight per member"),
                       ({"weights": [1]}, "one finite, non-negative weight per member"),
                       ({"members": [{"family": "nope"}, {"family": "svr"}]}, "unknown surrogate family")]:  # fmt: skip
        with pytest.raises((ValueError, SurrogateError), match=error):
            blend.set_params(seed=5, **bad)
        assert _shown(blend.get_params()) == before
    blend.set_params(members=[{"family": "additive"}], weights=None)
    assert blend.get_params()["members"] == [{"family": "additive"}]


def test_a_clone_of_a_fitted_blend_fits_to_the_same_predictions():
    y = _y(TRAIN)
    blend = make("blend", members=[{"family": "additive", "params": {"transform": "log"}}, {"family": "svr"}])
    fitted = blend.fit(TRAIN, y)
    copy = clone(fitted)
    assert not copy.fitted_
    np.testing.assert_allclose(copy.fit(TRAIN, y).predict(TEST), fitted.predict(TEST), rtol=1e-12)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"blend"}))
def test_every_family_but_blend_takes_its_own_feature_rows(family):
    few, y = TRAIN[:60], _y(TRAIN[:60])
    model = make(family, **FAST[family]).fit(few, y)
    rows = model.features(TEST)
    assert rows.ndim == 2 and len(rows) == len(TEST)
    expected = model.predict(TEST)
    np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict(rows.tolist()), expected, rtol=1e-12)
    on_rows = make(family, **FAST[family]).fit(model.features(few), y)
    np.testing.assert_allclose(on_rows.predict(rows), expected, rtol=1e-9)
    with pytest.raises(ValueError, match="2-D"):
        model.predict(rows[0])
    with pytest.raises(ValueError, match="architectures or rows of numbers"):
        model.predict(["b0"])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_refuses_targets_it_cannot_fit(family):
    few, y = TRAIN[:30], _y(TRAIN[:30])
    params = FAST.get(family, {}) if family != "blend" else {"members": [{"family": "additive"}]}
    for bad, message in (([*y[:-1], float("nan")], r"y\[29\] = nan"), ([], "non-empty"), ([[1.0]] * 30, "non-empty")):
        with pytest.raises(ValueError, match=message):
            make(family, **params).fit(few if len(bad) else [], bad)
    if family != "blend":
        model = make(family, **params).fit(few, y)
        rows = model.features(TEST)
        with pytest.raises(ValueError, match=rf"{family} feature rows have {rows.shape[1]} columns"):
            model.predict(rows[:, :5])
        rows[0, 0] = np.nan
        with pytest.raises(ValueError, match="must be finite numbers"):
            model.predict(rows)
        with pytest.raises(TypeError, match="takes a list of architectures, got a str among them"):
            model.predict([TEST[0], TEST[1].id])


@pytest.mark.parametrize(
    ("family", "params", "message"),
    [
        ("xgboost", {"n_estimators": 0}, "n_estimators must be a whole number >= 1, got 0"),
        ("xgboost", {"n_estimators": 2.5}, "n_estimators must be a whole number >= 1, got 2.5"),
        ("xgboost", {"max_depth": -1}, "max_depth must be a whole number >= 0"),  # 0 is XGBoost's "no limit"
        ("xgboost", {"max_depth": 2.5}, "max_depth must be a whole number >= 0"),
        ("xgboost", {"subsample": 2.0}, r"subsample must be a number in \(0, 1\], got 2.0"),
        ("lightgbm", {"learning_rate": float("nan")}, "learning_rate=nan is not a finite number"),
        ("lightgbm", {"num_leaves": 1}, "num_leaves must be a whole number >= 2, got 1"),
        ("lightgbm", {"min_child_samples": -1}, "min_child_samples must be a whole number >= 0"),
        ("hybrid", {"subsample": -0.5}, r"subsample must be a number in \(0, 1\]"),
        ("hybrid", {"colsample_bytree": 0}, r"colsample_bytree must be a number in \(0, 1\]"),
        ("random_forest", {"n_estimators": "many"}, "n_estimators must be a whole number >= 1, got 'many'"),
        ("random_forest", {"max_features": 2.0}, "max_features must be None, 'sqrt', 'log2'"),
        ("random_forest", {"max_depth": 0}, "max_depth must be None or a whole number >= 1"),
        ("random_forest", {"min_samples_leaf": 1.5}, r"min_samples_leaf must be a whole number >= 1 or a number in"),
        ("svr", {"epsilon": -1.0}, "epsilon must be a number >= 0"),
        ("additive", {"alpha": -1}, "alpha must be 'auto' or a finite number >= 0"),
        ("additive", {"alpha": float("nan")}, "alpha=nan is not a finite number"),
        ("gp", {"steps": 0}, "steps must be a whole number >= 1"),
        ("gp", {"steps": 10.5}, "steps must be a whole number >= 1"),
        ("gp", {"fit_subset": 1}, "fit_subset must be a whole number >= 2"),
        ("xgboost", {"n_jobs": 2.5}, "n_jobs must be None or a whole number other than 0"),
        ("lightgbm", {"n_jobs": "all"}, "n_jobs must be None or a whole number other than 0"),
        ("hybrid", {"n_jobs": "all"}, "n_jobs must be None or a whole number other than 0"),
        ("random_forest", {"n_jobs": 0}, "n_jobs must be None or a whole number other than 0"),
        ("svr", {"gamma": -1.0}, "gamma must be 'scale', 'auto' or a number >= 0"),
        ("svr", {"gamma": "bogus"}, "gamma must be 'scale', 'auto' or a number >= 0"),
        ("additive", {"seed": -1}, r"seed must be a whole number from 0 to 2\*\*32 - 1, got -1"),
        ("random_forest", {"seed": "a"}, "seed must be a whole number"),
        ("svr", {"seed": True}, "seed must be a whole number"),
    ],
)
def test_hyperparameters_no_fit_can_use_are_refused(family, params, message):
    with pytest.raises(ValueError, match=message):
        make(family, **params)
    model = make(family)
    with pytest.raises(ValueError, match=message):
        model.set_params(**params)
    assert all(model.get_params()[k] != v for k, v in params.items() if v == v)  # unchanged
    edges = {"n_estimators": 1, "max_depth": np.int64(2), "subsample": 1, "num_leaves": 2, "seed": 2**32 - 1,
             "fit_subset": 2, "n_jobs": -1, "gamma": 0.0}  # fmt: skip
    make(family, **{k: v for k, v in edges.items() if k in model.get_params()})  # the limits themselves pass


def test_forest_takes_what_scikit_learn_takes():
    for features in (None, "sqrt", 3, 0.5, np.float64(0.5), 1.0):
        make("random_forest", max_features=features)
    for leaf in (1, np.int64(3), 0.05):
        make("random_forest", min_samples_leaf=leaf)
    with pytest.raises(ValueError, match="max_features must be"):
        make("random_forest", max_features=np.float32(0.5))  # which scikit-learn refuses too
    fitted = make("random_forest", n_estimators=5, max_features=np.float64(0.5), min_samples_leaf=0.05)
    assert fitted.fit(TRAIN[:40], _y(TRAIN[:40])).predict(TEST[:3]).shape == (3,)


def test_hybrid_rows_need_both_encodings_and_a_blend_takes_no_rows():
    hybrid = make("hybrid", n_estimators=20).fit(TRAIN[:60], _y(TRAIN[:60]))
    with pytest.raises(
        ValueError, match=r"hybrid feature rows have 267 columns \(168 additive, then analytic\), got 99"
    ):
        hybrid.predict(hybrid.features(TEST)[:, 168:])
    blend = make("blend", members=[{"family": "additive"}]).fit(TRAIN[:60], _y(TRAIN[:60]))
    for rows in (np.zeros((4, 28)), np.zeros((4, 28)).tolist()):
        with pytest.raises(TypeError, match="needs architectures, not feature rows"):
            blend.predict(rows)


@pytest.mark.parametrize(
    ("family", "params", "seeded"),
    [
        ("additive", {}, False),
        ("svr", {}, False),
        ("xgboost", {"n_estimators": 20, "subsample": 1.0, "colsample_bytree": 1.0}, False),
        ("xgboost", {"n_estimators": 20}, True),
        ("lightgbm", {"n_estimators": 20, "subsample": 1.0, "colsample_bytree": 1.0}, False),
        ("hybrid", {"n_estimators": 20}, True),
        ("random_forest", {"n_estimators": 10}, True),
        ("gp", {"steps": 5, "fit_subset": 100}, False),  # all 100 rows: the seed picks nothing
        ("gp", {"steps": 5, "fit_subset": 50}, True),
        ("blend", {"members": [{"family": "additive"}, {"family": "svr"}]}, False),
        ("blend", {"members": [{"family": "additive"}, {"family": "xgboost", "params": {"n_estimators": 20}}]}, True),
    ],
)
def test_a_seed_ensemble_of_a_seed_independent_model_warns(family, params, seeded, caplog):
    few = TRAIN[:100]
    with caplog.at_level(logging.WARNING, logger="accelnas.surrogates.models.ensemble"):
        ensemble = SeedEnsemble(make(family, **params), n_members=2).fit(few, _y(few))
    warned = [r.getMessage() for r in caplog.records if "do not depend on their seed" in r.getMessage()]
    assert bool(warned) is not seeded
    if warned:
        assert warned[0].startswith(f"{family} surrogates with these parameters")
    _, spread = ensemble.predict_dist(TEST)
    assert bool(np.any(spread > 0)) is seeded  # what the warning claims


def test_xgboost_depth_zero_means_no_limit():
    for family in ("xgboost", "hybrid"):
        model = make(family, max_depth=0, n_estimators=20).fit(TRAIN[:60], _y(TRAIN[:60]))
        assert np.all(np.isfinite(model.predict(TEST[:5])))


@pytest.mark.parametrize("model", [make("additive"), SeedEnsemble(make("xgboost", n_estimators=20), n_members=2)])
def test_scikit_learn_model_selection_takes_surrogates_and_lists_of_architectures(model):
    from sklearn.base import is_regressor
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_score

    archs, y = TRAIN[:90], _y(TRAIN[:90])
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(model, archs, y, cv=folds)  # default scoring: the estimator's own R²
    by_hand = []
    for train, val in folds.split(archs):
        fitted = clone(model).fit([archs[i] for i in train], y[train])
        by_hand.append(r2_score(y[val], fitted.predict([archs[i] for i in val])))
    assert is_regressor(model) and np.isfinite(scores).all() and np.allclose(scores, by_hand)


def test_grid_search_over_a_surrogate_refits_the_best_parameters():
    from sklearn.model_selection import GridSearchCV

    archs, y = TRAIN[:90], _y(TRAIN[:90])
    search = GridSearchCV(make("xgboost", n_estimators=30), {"max_depth": [1, 4]}, cv=3).fit(archs, y)
    best = make("xgboost", n_estimators=30, **search.best_params_).fit(archs, y)
    assert search.best_estimator_.get_params() == best.get_params()
    np.testing.assert_allclose(search.predict(TEST), best.predict(TEST), rtol=1e-6)


@pytest.mark.parametrize("family", [*sorted(FAMILIES), "ensemble"])
def test_scikit_learn_tells_fitted_from_unfitted_surrogates(family):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    model = _protocol_model(family)
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    with pytest.raises(NotFittedError, match="before predicting"):
        model.predict(TEST[:2])
    if hasattr(model, "predict_dist"):
        with pytest.raises(NotFittedError, match="before predicting"):
            model.predict_dist(TEST[:2])
    model.fit(TRAIN[:40], _y(TRAIN[:40]))
    check_is_fitted(model)
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(model))


def test_feature_rows_in_a_data_frame_and_architectures_in_a_series_are_taken():
    import pandas as pd
    from sklearn.model_selection import cross_val_score

    few, y = TRAIN[:60], _y(TRAIN[:60])
    model = make("xgboost", n_estimators=20).fit(few, y)
    rows = pd.DataFrame(model.features(TEST))
    expected = model.predict(TEST)
    np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict(pd.Series(TEST)), expected, rtol=1e-12)
    np.testing.assert_allclose(model.predict(np.array(TEST, dtype=object)), expected, rtol=1e-12)
    on_frame = make("xgboost", n_estimators=20).fit(pd.DataFrame(model.features(few)), pd.Series(y))
    np.testing.assert_allclose(on_frame.predict(rows), expected, rtol=1e-9)
    assert np.isfinite(cross_val_score(make("additive"), pd.DataFrame(make("additive").features(few)), y, cv=3)).all()
    with pytest.raises(ValueError, match="columns"):
        model.predict(rows.iloc[:, :5])
    blend = make("blend", members=[{"family": "additive"}]).fit(few, y)
    for archs in (pd.Series(TEST), np.array(TEST, dtype=object)):
        np.testing.assert_allclose(blend.predict(archs), blend.predict(TEST), rtol=1e-12)
    with pytest.raises(TypeError, match="needs architectures, not feature rows"):
        blend.predict(rows)


def test_lightgbm_refuses_a_row_share_that_bags_no_row():
    with pytest.raises(ValueError, match=r"subsample=0.1 of 9 rows bags no row"):
        make("lightgbm", n_estimators=5, subsample=0.1).fit(TRAIN[:9], _y(TRAIN[:9]))
    with pytest.raises(ValueError, match=r"subsample=0.8 of 1 rows bags no row"):
        make("lightgbm", n_estimators=5).fit(TRAIN[:1], _y(TRAIN[:1]))
    make("lightgbm", n_estimators=5, subsample=0.1).fit(TRAIN[:10], _y(TRAIN[:10]))  # one row in each bag
    make("lightgbm", n_estimators=5, subsample=1.0).fit(TRAIN[:1], _y(TRAIN[:1]))


@pytest.mark.parametrize("change", [{"transform": "none"}, {"encoding": "onehot"}, {"n_estimators": 6}])
def test_changing_a_parameter_of_a_fitted_surrogate_unfits_it(change):
    from sklearn.exceptions import NotFittedError

    model = make("random_forest", n_estimators=5).fit(TRAIN[:40], _y(TRAIN[:40]))
    expected = model.predict(TEST[:3])
    model.set_params(**model.get_params())  # the same values: still fitted
    np.testing.assert_array_equal(model.predict(TEST[:3]), expected)
    model.set_params(**change)
    with pytest.raises(NotFittedError, match="before predicting"):
        model.predict(TEST[:3])
    with pytest.raises(SurrogateError, match="unfitted"):
        artifact.save(SurrogateArtifact(model, "sim/x", "latency", "ms"), "unused")


def test_changing_a_parameter_of_a_fitted_seed_ensemble_unfits_it():
    from sklearn.exceptions import NotFittedError

    ensemble = _protocol_model("ensemble").fit(TRAIN[:40], _y(TRAIN[:40]))
    ensemble.set_params(**ensemble.get_params())
    assert ensemble.predict(TEST[:3]).shape == (3,)
    # a refused change changes nothing, the ensemble's fit included
    for bad, error in [({"base__transform": "sqrt"}, "transform"), ({"base__depth": 3}, "unknown parameter 'depth'")]:
        with pytest.raises(ValueError, match=error):
            ensemble.set_params(**bad)
        assert ensemble.predict(TEST[:3]).shape == (3,)
    ensemble.set_params(base__transform="none")
    with pytest.raises(NotFittedError, match="before predicting"):
        ensemble.predict(TEST[:3])
