import hashlib
import json
import logging
import re
import time
import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from accelnas.core.dataset import COLUMNS, file_stem, read, select, validate, write
from accelnas.core.errors import DatasetError, SurrogateError
from accelnas.core.model import count_macs
from accelnas.core.space import EFFICIENTNET_B0, parse_architecture, sample
from accelnas.surrogates import artifact
from accelnas.surrogates.build import _tuned
from accelnas.surrogates.features import encode
from accelnas.surrogates.fit import fit_surrogate, noise_weights
from accelnas.surrogates.metrics import regression_metrics
from accelnas.surrogates.models import FAMILIES, AdditiveSurrogate, XGBoostSurrogate
from accelnas.surrogates.recipes import fit_options, recipe_for
from accelnas.surrogates.selection import select_family, split, tune


def _frame(n=240, seed=0, noise=0.0):
    """A dataset whose latency is a known function of the architecture (MACs at 64 px)."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in sample(n, seed):
        value = count_macs(a, 64) / 1e6 * (1 + noise * rng.standard_normal())
        rows.append({"arch_id": a.id, **a.to_config(), "target": "sim/x", "metric": "latency", "value": value,
                     "unit": "ms", "settings_key": "k"})  # fmt: skip
    return pd.DataFrame(rows)


def test_metrics():
    m = regression_metrics([1, 2, 3, 4], [1, 2, 3, 4])
    assert m["r2"] == 1 and m["kendall_tau"] == 1 and m["within_5pct"] == 1
    m = regression_metrics([1, 2, 3, 4], [4, 3, 2, 1])
    assert m["kendall_tau"] == -1 and m["r2"] < 0


def test_metrics_shares_at_the_edges():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 RuntimeWarning
        exact = regression_metrics([0, 1, 2], [0, 1, 2])
        near = regression_metrics([0, 100, 200, 10], [0.01, 105, 220, 11.5])
    assert exact["within_5pct"] == exact["within_10pct"] == 1.0
    # 0.01 against 0 is beyond any share; 105 is exactly 5% off (within), 220 10%, 11.5 15%
    assert near["within_5pct"] == 0.25 and near["within_10pct"] == 0.5
    for truth, pred in (([1, 2, 3, 4], [1, 2, np.nan, 4]), ([1, np.nan, 3, 4], [1, 2, 3, 4])):
        m = regression_metrics(truth, pred)
        assert all(np.isnan(m[k]) for k in ("r2", "mae", "rmse", "within_5pct", "within_10pct")), m


@pytest.mark.parametrize(
    ("truth", "pred", "error"),
    [
        (np.ones((3, 2)), np.ones((3, 2)), r"1-D arrays .* shapes \(3, 2\) and \(3, 2\)"),
        ([1, 2, 3], [[1, 2, 3]], "1-D arrays"),
        ([1, 2, 3], [1, 2], "equally many truths and predictions, at least 2, got 3 and 2"),
        ([1], [1], "at least 2"),
    ],
)
def test_metrics_refuse_input_of_the_wrong_shape(truth, pred, error):
    with pytest.raises(ValueError, match=error):
        regression_metrics(truth, pred)


class _Sleepy(AdditiveSurrogate):
    """An additive model whose fit takes 10 ms per "tree": trial costs known in advance."""

    family = "sleepy"
    _own_params: ClassVar[dict[str, Any]] = {"alpha": "auto", "n_estimators": 1}

    def _fit(self, X, z, weight=None):
        time.sleep(0.01 * self.n_estimators)
        super()._fit(X, z, weight)


def test_tuning_keeps_to_its_budget(monkeypatch):
    """Trials of up to 1 s in a 0.5 s budget: none is started that would end past it."""
    monkeypatch.setitem(FAMILIES, "sleepy", _Sleepy)
    frame = _frame(60)
    archs, y = [parse_architecture(i) for i in frame["arch_id"]], frame["value"].to_numpy()
    start = time.monotonic()
    chosen = tune("sleepy", archs, y, space={"n_estimators": ("int", 1, 100)}, budget_seconds=0.5, seed=1)
    spent = time.monotonic() - start
    assert spent < 0.5 + 0.2, spent
    assert chosen.scores[0]["params"] == {"n_estimators": 1}  # the cheapest trial first
    assert len(chosen.scores) >= 1 and chosen.params in [s["params"] for s in chosen.scores]
    with pytest.raises(ValueError, match="budget_seconds"):
        tune("sleepy", archs, y, space={}, budget_seconds=0)


@pytest.mark.parametrize("family", ["additive", "gp", "blend"])
def test_tuning_a_family_without_a_search_space_says_so(family, caplog):
    recipe = {"family": family, "params": {"transform": "log"}, "ensemble": 1}
    with caplog.at_level(logging.WARNING, logger="accelnas.surrogates.build"):
        kept = _tuned(_frame(40), "sim/x", "latency", recipe, 5.0, 0.25, 0)
    assert kept == recipe
    assert any(f"for the {family} family" in r.getMessage() and "--tune-seconds" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_fit_ranks_held_out_architectures(tmp_path):
    result = fit_surrogate(_frame(noise=0.01), "sim/x", "latency", test_fraction=0.25, seed=0)
    test = result.artifact.metrics["test"]
    chosen = result.selection
    assert chosen is not None and len(chosen.scores) >= 4
    assert max(s["kendall_tau"] for s in chosen.scores) == chosen.validation["kendall_tau"]
    assert test["n"] == 60 and result.artifact.metrics["n_train"] == 180
    assert test["kendall_tau"] > 0.8 and test["r2"] > 0.9
    assert len(set(result.test_ids)) == 60 and set(result.test_ids) <= set(_frame()["arch_id"])


def test_fit_surrogate_refuses_rows_and_settings_it_cannot_use():
    frame = _frame(40)
    with pytest.raises(DatasetError, match=r"sim/x:latency rows: row 3: value nan is not a finite number"):
        fit_surrogate(frame.assign(value=np.where(np.arange(40) == 3, np.nan, frame["value"])), "sim/x", "latency")
    repeated = pd.concat([frame, frame.iloc[:8]], ignore_index=True)  # held-out rows would also be training rows
    with pytest.raises(DatasetError, match="rows 0 and 40 hold the same architecture"):
        fit_surrogate(repeated, "sim/x", "latency")
    with pytest.raises(DatasetError, match="missing column 'metric'"):
        fit_surrogate(frame.drop(columns=["metric"]), "sim/x", "latency")
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="ensemble must be a whole number >= 1"):
            fit_surrogate(frame, "sim/x", "latency", family="additive", ensemble=bad)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        fit_surrogate(frame, "sim/x", "latency", family="additive", seed=-1)


def test_selection_ranks_undefined_scores_last_and_splits_keep_rows_on_both_sides():
    frame = _frame(1000)  # one validation split: a constant model's τ is undefined there
    archs = [parse_architecture(i) for i in frame["arch_id"]]
    constant = ("lightgbm", {"min_child_samples": 10_000})  # a single leaf predicts a constant
    chosen = select_family(archs, frame["value"].to_numpy(), candidates=[constant, ("additive", {})])
    assert np.isnan(chosen.scores[0]["kendall_tau"]) and chosen.family == "additive"
    # cross-validated (small data): pooled over folds the fold means can rank well, yet it learned nothing
    small = _frame(12, seed=5, noise=0.3)  # noisy enough that the additive model's τ is below the fold means'
    few = [parse_architecture(i) for i in small["arch_id"]]
    chosen = select_family(few, small["value"].to_numpy(), candidates=[constant, ("additive", {})])
    assert chosen.scores[0]["constant_predictions"] and not chosen.scores[1]["constant_predictions"]
    assert chosen.family == "additive"
    train, held = split(10, 0.97, 0)
    assert len(train) == 2 and len(held) == 8 and set(train) | set(held) == set(range(10))
    with pytest.raises(ValueError, match="at least 4"):
        split(3, 0.5, 0)
    result = fit_surrogate(frame.head(20), "sim/x", "latency", test_fraction=0.99, family="additive")
    assert result.artifact.metrics["n_train"] == 2
    # choosing the family cross-validates the training rows: two folds of one row each cannot be fitted
    with pytest.raises(DatasetError, match="at least 4 training architectures, got 2"):
        fit_surrogate(frame.head(20), "sim/x", "latency", test_fraction=0.99)


def test_save_load_round_trip_and_corruption(tmp_path, caplog):
    result = fit_surrogate(_frame(120), "sim/x", "latency", seed=1, family="xgboost", params={"n_estimators": 100})
    out = artifact.save(result.artifact, tmp_path / "s")
    loaded = artifact.load(out)
    archs = [EFFICIENTNET_B0, *sample(5, 9)]
    np.testing.assert_allclose(loaded.predict(archs), result.artifact.predict(archs), rtol=1e-6)
    assert loaded.metric == "latency" and loaded.unit == "ms" and loaded.dataset["rows"] == 120
    meta = json.loads((out / "surrogate.json").read_text())
    assert meta["model"]["params"]["encoding"] == "raw" and meta["versions"]["xgboost"]
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.pickle"))

    model_file = artifact.model_file(out, "xgboost.json")
    original = model_file.read_bytes()
    model_file.write_bytes(original[:-50])
    with pytest.raises(SurrogateError, match="checksum"):
        artifact.load(out)
    model_file.write_bytes(original)
    (out / "surrogate.json").write_text(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(SurrogateError, match="format 99"):
        artifact.load(out)
    for odd in ("2", 0, True, 2.5):  # not a format number: named as it is written, not read as one
        (out / "surrogate.json").write_text(json.dumps(meta | {"format_version": odd}))
        with pytest.raises(SurrogateError, match=re.escape(f"has surrogate format {odd!r};")):
            artifact.load(out)
    edited = json.loads(json.dumps(meta))
    edited["model"]["params"]["max_depth"] += 1
    (out / "surrogate.json").write_text(json.dumps(edited))
    with pytest.raises(SurrogateError, match="model state does not match"):
        artifact.load(out)
    mystery = json.loads(json.dumps(meta))
    mystery["model"]["params"]["encoding"] = "mystery"
    (out / "surrogate.json").write_text(json.dumps(mystery))
    with pytest.raises(SurrogateError, match="mystery"):
        artifact.load(out)
    for change, message in (
        ({"files": "notalist"}, "'files' must map file names to SHA-256 checksums"),
        ({"files": {}, "stored_as": {}}, "the model needs file 'xgboost.json', which 'files' does not list"),
        ({"stored_as": {"xgboost.json": "../xgboost.json"}}, "'stored_as' must map each of 'files' to a plain"),
        ({"stored_as": {}}, "'stored_as' must map each of 'files'"),
        ({"metric": 5}, "'metric' must be a non-empty string, got 5"),
        ({"unit": 5}, "'unit' must be a string or null"),
        ({"metrics": []}, "'metrics' must be an object"),
    ):
        (out / "surrogate.json").write_text(json.dumps(meta | change))
        with pytest.raises(SurrogateError, match=message) as raised:
            artifact.load(out)
        assert "\n" not in str(raised.value)
    for edit, message in (
        (lambda state: state["state"].pop("model_file"), "the model state lacks 'model_file'"),
        (lambda state: state.update(params="x"), "malformed model state"),
    ):
        broken = json.loads(json.dumps(meta))
        edit(broken["model"])
        broken["model_sha256"] = artifact._state_sha256(broken["model"])
        (out / "surrogate.json").write_text(json.dumps(broken))
        with pytest.raises(SurrogateError, match=message):
            artifact.load(out)
    # a model file XGBoost refuses (edited with its checksum recomputed): its message, not its stack trace
    garbled = original.replace(b'"base_score":"', b'"base_score":"x', 1)
    model_file.write_bytes(garbled)
    files = {"xgboost.json": hashlib.sha256(garbled).hexdigest()}
    (out / "surrogate.json").write_text(json.dumps(meta | {"files": files}))
    with pytest.raises(SurrogateError, match="XGBoostError") as raised:
        artifact.load(out)
    assert "\n" not in str(raised.value) and "Stack trace" not in str(raised.value)
    model_file.write_bytes(original)
    (out / "surrogate.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "model_sha256"}))
    with caplog.at_level("WARNING", logger="accelnas.surrogates.artifact"):
        assert artifact.load(out).metric == "latency"  # written before checksums were recorded: loads
    assert "loaded unchecked" in caplog.text
    (out / "surrogate.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(SurrogateError, match="not an accelnas surrogate"):
        artifact.load(out)


def test_a_save_over_an_old_surrogate_killed_midway_leaves_the_old_one_loadable(tmp_path, monkeypatch):
    from accelnas.core import files

    archs = [EFFICIENTNET_B0, *sample(5, 9)]
    old = fit_surrogate(_frame(120), "sim/x", "latency", seed=1, family="xgboost", params={"n_estimators": 20})
    new = fit_surrogate(_frame(120, seed=5), "sim/x", "latency", seed=2, family="xgboost", params={"n_estimators": 40})
    out = artifact.save(old.artifact, tmp_path / "s")
    before = sorted(p.name for p in out.iterdir())
    write_text = files.write_text

    def killed_at_metadata(path, text):
        if str(path).endswith("surrogate.json"):
            raise KeyboardInterrupt  # the kill, after the new model files were written
        write_text(path, text)

    killed = fit_surrogate(_frame(120, seed=7), "sim/x", "latency", seed=3, family="xgboost",
                           params={"n_estimators": 30})  # fmt: skip
    monkeypatch.setattr(files, "write_text", killed_at_metadata)
    with pytest.raises(KeyboardInterrupt):
        artifact.save(killed.artifact, out)
    monkeypatch.undo()
    assert len(list(out.iterdir())) == 3  # the killed save's model file sits beside the old one
    np.testing.assert_allclose(artifact.load(out).predict(archs), old.artifact.predict(archs), rtol=1e-6)
    artifact.save(new.artifact, out)  # the next complete save takes over and removes both older files
    np.testing.assert_allclose(artifact.load(out).predict(archs), new.artifact.predict(archs), rtol=1e-6)
    after = sorted(p.name for p in out.iterdir())
    assert len(after) == len(before) == 2 and after != before and "surrogate.json" in after


def test_a_save_removes_only_the_model_files_of_the_surrogate_it_replaces(tmp_path):
    result = fit_surrogate(_frame(120), "sim/x", "latency", seed=1, family="xgboost", params={"n_estimators": 20})
    out = tmp_path / "s"
    out.mkdir()
    (out / "data.csv").write_text("keep me\n")
    (out / "plots").mkdir()
    (out / "surrogate.json").write_text(json.dumps({"files": {"data.csv": "x", "plots": "y"}}))  # not a surrogate
    artifact.save(result.artifact, out)
    assert (out / "data.csv").read_text() == "keep me\n" and (out / "plots").is_dir()
    meta = json.loads((out / "surrogate.json").read_text())
    meta["files"]["plots"] = meta["files"]["xgboost.json"]  # a surrogate.json naming a folder
    meta["stored_as"]["plots"] = "plots"
    (out / "surrogate.json").write_text(json.dumps(meta))
    artifact.save(result.artifact, out)  # succeeds; the folder stays
    assert (out / "plots").is_dir() and artifact.load(out).metric == "latency"


def test_surrogates_of_format_1_with_model_files_under_their_own_names_load(tmp_path):
    result = fit_surrogate(_frame(120), "sim/x", "latency", seed=1, family="lightgbm", params={"n_estimators": 20})
    out = artifact.save(result.artifact, tmp_path / "s")
    meta = json.loads((out / "surrogate.json").read_text())
    for name, stored in meta.pop("stored_as").items():
        (out / stored).rename(out / name)
    (out / "surrogate.json").write_text(json.dumps(meta | {"format_version": 1}))
    assert sorted(p.name for p in out.iterdir()) == ["lightgbm.txt", "surrogate.json"]
    archs = sample(5, 9)
    np.testing.assert_allclose(artifact.load(out).predict(archs), result.artifact.predict(archs), rtol=1e-6)
    artifact.save(result.artifact, out)  # saved again in the current format, the old file goes
    assert (
        [p.name for p in out.iterdir() if p.name.startswith("lightgbm")]
        == [artifact.model_file(out, "lightgbm.txt").name]
        != ["lightgbm.txt"]
    )


def test_an_undefined_metric_is_written_as_null_and_the_surrogate_loads(tmp_path):
    result = fit_surrogate(_frame(60), "sim/x", "latency", seed=1, family="additive")
    result.artifact.metrics["test"]["kendall_tau"] = float("nan")  # as for a constant prediction
    out = artifact.save(result.artifact, tmp_path / "s")
    text = (out / "surrogate.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # RFC 8259 readers refuse both
    meta = json.loads(text)
    assert meta["metrics"]["test"]["kendall_tau"] is None and isinstance(meta["metrics"]["test"]["r2"], float)
    archs = [EFFICIENTNET_B0, *sample(5, 9)]
    np.testing.assert_allclose(artifact.load(out).predict(archs), result.artifact.predict(archs), rtol=1e-9)


def test_save_refuses_what_load_would(tmp_path):
    from accelnas.surrogates.artifact import SurrogateArtifact

    fitted = fit_surrogate(_frame(40), "sim/x", "latency", seed=1, family="additive").artifact
    for changes, message in (({"target": None}, "without a target"), ({"metric": ""}, "without a metric"),
                             ({"model": AdditiveSurrogate()}, "unfitted")):  # fmt: skip
        bad = SurrogateArtifact(**(vars(fitted) | changes))
        with pytest.raises(SurrogateError, match=message):
            artifact.save(bad, tmp_path / "s")
        assert not (tmp_path / "s").exists()
    with pytest.raises(TypeError, match="takes a SurrogateArtifact"):
        artifact.save(None, tmp_path / "s")
    ensemble = fit_surrogate(_frame(40), "sim/x", "latency", seed=1, family="xgboost", ensemble=2,
                             params={"n_estimators": 20}).artifact  # fmt: skip
    artifact.load(artifact.save(ensemble, tmp_path / "e"))  # a seed ensemble saves too


def test_a_state_edited_out_of_shape_is_refused_at_load(tmp_path):
    """A model state that decodes but cannot predict (coefficients cut short, or NaN) is named at load."""
    fitted = fit_surrogate(_frame(60), "sim/x", "latency", family="additive", seed=0)
    out = tmp_path / "s"
    artifact.save(fitted.artifact, out)
    meta = json.loads((out / "surrogate.json").read_text())
    assert artifact.load(out).predict([EFFICIENTNET_B0]).shape == (1,)
    for edit, message in (
        (lambda data: data.update(coef=data["coef"][:10]), "the model state is malformed (ValueError"),
        (lambda data: data.update(intercept=float("nan")), "the model state is malformed (it predicts [nan])"),
    ):
        broken = json.loads(json.dumps(meta))
        edit(broken["model"]["state"])
        broken["model_sha256"] = artifact._state_sha256(broken["model"])
        (out / "surrogate.json").write_text(json.dumps(broken))
        with pytest.raises(SurrogateError) as raised:
            artifact.load(out)
        assert message in str(raised.value) and str(out) in str(raised.value) and "\n" not in str(raised.value)


def test_estimator_protocol():
    model = XGBoostSurrogate(n_estimators=10)
    assert model.get_params()["n_estimators"] == 10
    assert model.set_params(max_depth=2) is model and model.max_depth == 2
    with pytest.raises(ValueError, match="unknown parameter"):
        model.set_params(depth=3)
    with pytest.raises(NotFittedError, match="fit"):
        model.predict([EFFICIENTNET_B0])
    with pytest.raises(ValueError, match="transform"):
        XGBoostSurrogate(transform="sqrt")
    archs = sample(30, 2)
    X = encode(archs, "raw+products")
    assert X.shape == (30, 56)
    fitted = XGBoostSurrogate(encoding="raw+products", n_estimators=20).fit(archs, np.arange(1.0, 31.0))
    np.testing.assert_allclose(fitted.predict(archs), fitted.predict(X))


def test_dataset_validation_and_selection():
    frame = _frame(20)
    assert validate(frame) is not None
    integers = validate(frame.assign(value=np.arange(1, 21)))  # a CSV of whole numbers is valid
    assert integers["value"].dtype == float and integers["value"].tolist() == list(range(1, 21))
    with pytest.raises(DatasetError, match="row 0: value True is not a finite number"):
        validate(frame.assign(value=[True, False] * 10))
    with pytest.raises(DatasetError, match="missing column 'value'"):
        validate(frame.drop(columns=["value"]))
    assert validate(frame.iloc[:0]).empty  # a file with columns but no rows (e.g. an empty Parquet export)
    bad = frame.astype({"value": object})
    bad.loc[3, "value"] = "n/a"
    with pytest.raises(DatasetError, match="row 3"):
        validate(bad)
    bad = frame.copy()
    bad.loc[5, "arch_id"] = EFFICIENTNET_B0.id
    with pytest.raises(DatasetError, match="does not match"):
        validate(bad)
    with pytest.raises(DatasetError, match=r"row 2: latency -5\.0 is not positive"):
        validate(frame.assign(value=np.where(np.arange(20) == 2, -5.0, frame["value"])))
    with pytest.raises(DatasetError, match=r"row 0: accuracy 150\.0 is not a percentage"):
        validate(frame.assign(metric="accuracy", value=150.0))
    with pytest.raises(DatasetError, match="row 4: no metric"):
        validate(frame.assign(metric=["latency"] * 4 + [None] * 16))
    repeated = pd.concat([frame, frame.iloc[[3]].assign(value=99.0)], ignore_index=True)
    with pytest.raises(DatasetError, match="rows 3 and 20 hold the same architecture"):
        validate(repeated)
    validate(pd.concat([frame, frame.iloc[[3]].assign(settings_key="other")], ignore_index=True))  # other settings
    units = frame.assign(unit=["ms"] * 6 + [None] + ["seconds"] + ["ms"] * 12)
    with pytest.raises(DatasetError, match=r"rows 0 and 7 give sim/x:latency in different units \('ms', 'seconds'\)"):
        validate(units)
    validate(units.assign(unit=["ms"] * 6 + [None] + ["ms"] * 13))  # a row without a unit is not another unit
    validate(pd.concat([frame, frame.assign(target="sim/y", unit="s")], ignore_index=True))  # per target
    with pytest.raises(DatasetError, match="no throughput rows"):
        select(frame, "sim/x", "throughput")
    mixed = frame.copy()
    mixed.loc[:4, "settings_key"] = "other"
    with pytest.raises(DatasetError, match="2 different settings"):
        select(mixed, "sim/x", "latency")
    assert "settings_key" in COLUMNS


def test_cut_off_csv_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    _frame(5).to_csv(path, index=False)
    text = path.read_text()
    assert read(path) is not None
    path.write_text(text[: text.rindex(",")])  # the last row loses its last field
    with pytest.raises(DatasetError, match=r"line 6 has \d+ fields, the header \d+"):
        read(path)


def test_csv_keeps_text_columns_that_look_like_numbers(tmp_path):
    frame = _frame(6)
    frame["settings_key"] = ["0123456789012345", "1234567e89012345", "e10", "1e5", "00", "abc"]
    frame["source"] = "007"
    write(frame, tmp_path)
    back = read(tmp_path / f"{file_stem(frame['target'][0])}.csv")
    assert back["settings_key"].tolist() == frame["settings_key"].tolist() and set(back["source"]) == {"007"}
    parquet = read(tmp_path / f"{file_stem(frame['target'][0])}.parquet")
    assert parquet["settings_key"].tolist() == back["settings_key"].tolist()


def test_targets_sharing_a_file_name_are_refused(tmp_path):
    frame = pd.concat([_frame(3).assign(target="a_/b"), _frame(3).assign(target="a/_b")], ignore_index=True)
    with pytest.raises(DatasetError, match="targets 'a_/b' and 'a/_b' share the file name 'a___b'"):
        write(frame, tmp_path)
    assert not list(tmp_path.iterdir())


def test_noise_weights():
    y = np.array([100.0, 100.0, 200.0, 50.0])
    std = np.array([1.0, 4.0, np.nan, 1.0])
    w = noise_weights(y, std, "none")
    floor = np.median([1.0, 4.0, 1.0])
    np.testing.assert_allclose(w, 1 / (np.array([1.0, 16.0, floor**2, 1.0]) + floor**2))
    log_w = noise_weights(y, std, "log")  # relative noise: 1%, 4%, typical, 2%
    assert log_w[0] > log_w[3] > log_w[1]
    inv_w = noise_weights(y, std, "inverse")
    assert inv_w[3] < inv_w[0]  # std/y² is larger for the smaller value
    assert noise_weights(y, np.full(4, np.nan), "log") is None
    half = noise_weights(y, std, "none", floor=0.5)  # a lower floor spreads the weights further
    np.testing.assert_allclose(half, 1 / (np.array([1.0, 16.0, floor**2, 1.0]) + (0.5 * floor) ** 2))
    assert half[0] / half[1] > w[0] / w[1]
    with pytest.raises(ValueError, match="floor"):
        noise_weights(y, std, "none", floor=0.0)


def test_recipes_pass_their_noise_floor_to_the_fit():
    tpuv3 = fit_options(recipe_for("tpuv3/anb", "throughput"))
    assert tpuv3["weighting"] == "noise" and tpuv3["noise_floor"] == 0.5
    assert fit_options(recipe_for("sim/x", "latency"))["noise_floor"] == 1.0
    frame = _frame(120)
    frame["std"] = np.linspace(0.001, 0.2, len(frame)) * frame["value"]
    options = {"family": "additive", "params": None, "ensemble": 1, "weighting": "noise"}
    fits = {f: fit_surrogate(frame, "sim/x", "latency", seed=0, noise_floor=f, **options) for f in (1.0, 0.5)}
    assert fits[0.5].artifact.metrics["noise_floor"] == 0.5
    assert not np.allclose(fits[0.5].test_pred, fits[1.0].test_pred)


def test_fit_with_noise_weighting_records_it():
    frame = _frame(240)
    noisy = np.arange(len(frame)) % 3 == 0
    rng = np.random.default_rng(1)
    frame["std"] = np.where(noisy, 0.3, 0.001) * frame["value"]
    frame["value"] *= 1 + np.where(noisy, 0.3, 0.001) * rng.standard_normal(len(frame))
    weighted = fit_surrogate(frame, "sim/x", "latency", seed=0, family="additive", weighting="noise")
    plain = fit_surrogate(frame, "sim/x", "latency", seed=0, family="additive")
    assert weighted.artifact.metrics["weighting"] == "noise" and plain.artifact.metrics["weighting"] == "none"
    # held-out targets are noisy too, so compare the predictions with the noiseless function
    truth = np.array([count_macs(parse_architecture(i), 64) / 1e6 for i in weighted.test_ids])
    assert weighted.test_ids == plain.test_ids
    error = {name: np.abs(r.test_pred - truth).mean() for name, r in (("weighted", weighted), ("plain", plain))}
    assert error["weighted"] < 0.5 * error["plain"], error
    without_std = fit_surrogate(frame.drop(columns="std"), "sim/x", "latency", family="additive", weighting="noise")
    assert without_std.artifact.metrics["weighting"] == "none"
    zero_std = fit_surrogate(frame.assign(std=0.0), "sim/x", "latency", family="additive", weighting="noise")
    assert zero_std.artifact.metrics["weighting"] == "none" and zero_std.artifact.metrics["noise_floor"] is None
    with pytest.raises(ValueError, match="weighting"):
        fit_surrogate(frame, "sim/x", "latency", family="additive", weighting="magic")


@pytest.mark.parametrize("transform", ["log", "inverse"])
def test_positive_transforms_predict_within_half_the_minimum_and_twice_the_maximum(transform, monkeypatch):
    """However far the fitted part extrapolates, predictions stay in [min / 2, 2 · max] of the training
    targets (natural unit); the span-widened range alone allowed up to max² / min (log) or 10 · max (1/y)."""
    archs = sample(12, 3)
    y = np.linspace(1.0, 15.0, 12)
    model = AdditiveSurrogate(transform=transform).fit(archs, y)
    extremes = np.array([-1e9, -50.0, 1e-12, 50.0, 1e9])
    monkeypatch.setattr(model, "_predict", lambda features: extremes)
    pred = model.predict(archs[:5])
    assert pred.min() >= 0.5 - 1e-12 and pred.max() == pytest.approx(30.0)
    monkeypatch.undo()
    inside = model.predict(archs)  # predictions inside the range are untouched
    assert np.all((inside >= 0.5) & (inside <= 30.0))
