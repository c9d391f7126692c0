"""Drift correction: session factors estimated from the measurement order and divided out."""

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

from accelnas.core import dataset
from accelnas.core.errors import DatasetError
from accelnas.core.model import count_macs
from accelnas.core.records import Measurement
from accelnas.core.space import parse_architecture, sample
from accelnas.core.store import Store
from accelnas.surrogates import artifact
from accelnas.surrogates.drift import block_offsets, estimate, order_correlation, resolve
from accelnas.surrogates.fit import fit_model, fit_surrogate
from accelnas.surrogates.recipes import fit_options, recipe_for


def _truth(arch):
    return 2e3 / (count_macs(arch, 64) / 1e6)


def _frame(n=600, drift_pct=4.0, noise_pct=0.3, seed=0):
    """Throughput measured while the device drifts slowly (a sine of ``drift_pct`` over 300 measurements)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(sample(n, seed)):
        factor = np.exp(drift_pct / 100 * np.sin(2 * np.pi * i / 300))
        value = _truth(a) * factor * (1 + noise_pct / 100 * rng.standard_normal())
        rows.append({"arch_id": a.id, **a.to_config(), "target": "sim/x", "metric": "throughput", "value": value,
                     "unit": "images/s", "settings_key": "k", "sequence": 1000 + 3 * i})  # fmt: skip
    return pd.DataFrame(rows)


def test_block_offsets_recover_session_effects_and_leave_clean_data_alone():
    rng = np.random.default_rng(0)
    sessions = rng.normal(0, 0.05, 20)
    sequence = rng.permutation(1000).astype(float)  # rows arrive in any order; blocks follow the sequence
    residual = sessions[(sequence // 50).astype(int)] + rng.normal(0, 0.01, 1000)
    offsets, session_std, blocks = block_offsets(residual, sequence, block=50)
    assert blocks == 20 and abs(session_std - sessions.std()) < 0.02
    np.testing.assert_allclose(offsets, sessions[(sequence // 50).astype(int)] - sessions.mean(), atol=0.006)
    flat, flat_std, _ = block_offsets(rng.normal(0, 0.01, 1000), sequence, block=50)
    assert flat_std < 0.002 and np.abs(flat).max() < 0.002  # no drift: (almost) no correction
    with pytest.raises(ValueError, match="block"):
        block_offsets(residual, sequence, block=1)


def test_drift_correction_fits_the_architecture_not_the_session(tmp_path):
    frame = _frame()
    options = {"family": "additive", "params": {"transform": "inverse"}, "test_fraction": 0.2, "seed": 0}
    corrected = fit_surrogate(frame, "sim/x", "throughput", drift="sequence", **options)
    plain = fit_surrogate(frame, "sim/x", "throughput", **options)
    assert corrected.test_ids == plain.test_ids
    truth = np.array([_truth(parse_architecture(i)) for i in corrected.test_ids])
    # the absolute level (the mean session) is not identifiable, so compare the spread of the log errors
    error = {n: np.std(np.log(r.test_pred / truth)) for n, r in (("drift", corrected), ("plain", plain))}
    assert error["drift"] < 0.4 * error["plain"], error
    facts = corrected.artifact.metrics["drift"]
    assert facts["method"] == "sequence" and facts["blocks"] == 10 and facts["explained"] > 0.25
    assert 2.0 < facts["spread_pct"] < 3.5 and plain.artifact.metrics["drift"] is None
    saved = artifact.save(corrected.artifact, tmp_path / "s")
    assert json.loads((saved / "surrogate.json").read_text())["metrics"]["drift"] == facts


def test_auto_drift_needs_a_complete_sequence_and_enough_rows():
    assert resolve("auto", np.arange(100.0), 100) == "sequence"
    assert resolve("auto", np.arange(99.0), 99) == "none"
    assert resolve("auto", None, 200) == "none"
    assert resolve("auto", np.r_[np.arange(199.0), np.nan], 200) == "none"
    assert resolve("sequence", None, 10) == "sequence"  # the strict mode fails later, with a reason
    with pytest.raises(ValueError, match="drift"):
        resolve("magic", None, 10)
    frame = _frame(240)
    auto = fit_surrogate(frame.drop(columns="sequence"), "sim/x", "throughput", family="additive", drift="auto")
    assert auto.artifact.metrics["drift"] is None


def test_bad_drift_input_is_a_clear_error():
    frame = _frame(240)
    with pytest.raises(DatasetError, match="'sequence' column"):
        fit_surrogate(frame.drop(columns="sequence"), "sim/x", "throughput", family="additive", drift="sequence")
    holes = frame.assign(sequence=frame["sequence"].where(frame.index % 7 != 0))
    with pytest.raises(DatasetError, match=r"\d+ of 192 rows lack one"):
        fit_surrogate(holes, "sim/x", "throughput", family="additive", drift="sequence")
    with pytest.raises(DatasetError, match="numbers in the 'sequence' column"):
        fit_surrogate(frame.assign(sequence="yesterday"), "sim/x", "throughput", family="additive", drift="sequence")
    with pytest.raises(DatasetError, match="positive"):
        fit_surrogate(frame.assign(value=-frame["value"]), "sim/x", "throughput", family="additive", drift="sequence")
    with pytest.raises(ValueError, match="drift"):
        fit_surrogate(frame, "sim/x", "throughput", family="additive", drift="magic")
    with pytest.raises(DatasetError, match="at least 100 rows"):
        estimate(lambda values, train, test: np.ones(len(test)), np.ones(60), np.arange(60.0))


def test_tpu_recipes_correct_drift_where_the_data_say_when_rows_were_measured():
    assert fit_options(recipe_for("tpuv3/anb", "throughput"))["drift"] == "auto"
    assert fit_options(recipe_for("tpuv2/anb", "throughput"))["drift"] == "auto"
    assert fit_options(recipe_for("a100/anb", "throughput"))["drift"] == "none"
    assert fit_options(recipe_for("sim/x", "latency"))["drift"] == "none"
    frame = _frame(300)
    archs = [parse_architecture(i) for i in frame["arch_id"]]
    y, seq = frame["value"].to_numpy(), frame["sequence"].to_numpy(float)
    options = {"family": "additive", "params": {"transform": "inverse"}, "drift": "auto"}
    correction = fit_model(archs, y, sequence=seq, **options).correction
    none = fit_model(archs, y, sequence=None, **options).correction
    assert correction is not None and correction.blocks == 6 and none is None


def test_campaign_datasets_carry_when_each_value_was_measured(tmp_path):
    with Store(tmp_path / "c.sqlite") as store:
        for a in sample(3, 4):
            m = Measurement("latency", "ms", 1.0, 0.1, 0.9, 1.1, [1.0], 1, 32, True)
            store.record_ok(a, "sim/x", "k", {}, m)
        frame = dataset.from_store(store)
    assert frame["sequence"].notna().all() and frame["sequence"].is_monotonic_increasing


def test_cli_fit_drift_option(tmp_path):
    frame = _frame(240)
    data = tmp_path / "d.parquet"
    frame.to_parquet(data)
    bad = tmp_path / "nosequence.parquet"
    frame.drop(columns="sequence").to_parquet(bad)
    ok = run_cli("fit", "--data", str(data), "--target", "sim/x", "--metric", "throughput", "--family", "additive",
                 "--drift", "sequence", "--out", str(tmp_path / "s"))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "s" / "surrogate.json").read_text())["metrics"]["drift"]["blocks"] == 4
    assert "drift corrected: ±" in ok.stdout and (tmp_path / "s" / "drift.png").is_file()
    again = run_cli("fit", "--data", str(data), "--target", "sim/x", "--metric", "throughput", "--family", "additive",
                    "--out", str(tmp_path / "s"))  # fmt: skip
    assert again.returncode == 0 and "drift corrected" not in again.stdout, again.stderr
    assert not (tmp_path / "s" / "drift.png").exists()  # the earlier fit's plot: no correction now
    failed = run_cli("fit", "--data", str(bad), "--target", "sim/x", "--metric", "throughput", "--family", "additive",
                     "--drift", "sequence", "--out", str(tmp_path / "t"))  # fmt: skip
    assert failed.returncode != 0 and "'sequence' column" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


def test_further_rounds_only_add_what_the_first_left():
    frame = _frame(400)
    truth = np.array([_truth(parse_architecture(i)) for i in frame["arch_id"]])
    y, seq = frame["value"].to_numpy(), frame["sequence"].to_numpy(float)
    exact = estimate(lambda values, train, test: truth[test], y, seq)
    twice = estimate(lambda values, train, test: truth[test], y, seq, rounds=2)
    drift = np.log(y / truth)
    assert np.corrcoef(exact.offsets, drift)[0, 1] > 0.95 and exact.explained > 0.9
    assert np.sqrt(np.mean((twice.offsets - exact.offsets) ** 2)) < 0.002


def test_cli_build_drift_override(tmp_path):
    data = tmp_path / "d.parquet"
    _frame(240).to_parquet(data)
    built = run_cli("surrogates", "build", "--from-data", str(data), "--family", "additive", "--drift", "sequence",
                    "--out", str(tmp_path / "b"))  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "drift corrected: ±" in built.stdout
    (entry,) = json.loads((tmp_path / "b" / "benchmark.json").read_text())["surrogates"]
    assert entry["recipe"]["drift"] == "sequence" and entry["drift"]["blocks"] == 5
    assert (tmp_path / "b" / entry["path"] / "drift.png").read_bytes()[:4] == b"\x89PNG"
    plain = run_cli(
        "surrogates", "build", "--from-data", str(data), "--family", "additive", "--out", str(tmp_path / "p")
    )
    assert plain.returncode == 0 and "drift corrected" not in plain.stdout
    (plain_entry,) = json.loads((tmp_path / "p" / "benchmark.json").read_text())["surrogates"]
    assert plain_entry["drift"] is None and not (tmp_path / "p" / plain_entry["path"] / "drift.png").exists()
    rebuilt = run_cli(
        "surrogates", "build", "--from-data", str(data), "--family", "additive", "--out", str(tmp_path / "b")
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert not (tmp_path / "b" / entry["path"] / "drift.png").exists()  # rebuilt without a correction


def test_estimate_refuses_settings_it_cannot_use():
    y, seq = np.ones(200), np.arange(200.0)
    for bad in ({"rounds": 0}, {"folds": 1}):
        with pytest.raises(ValueError, match="rounds >= 1 and folds >= 2"):
            estimate(lambda values, train, test: np.ones(len(test)), y, seq, **bad)


def test_order_correlation_measures_what_rows_measured_together_share():
    rng = np.random.default_rng(3)
    n = 4000
    sessions = np.repeat(rng.normal(0, 1, n // 100), 100)  # one factor per 100 consecutive measurements
    seq = np.arange(n) * 7.0
    for shared in (0.0, 0.25, 0.6):
        residual = np.sqrt(shared) * sessions + np.sqrt(1 - shared) * rng.normal(0, 1, n)
        assert order_correlation(residual, seq) == pytest.approx(shared, abs=0.08)
    residual = 0.5 * sessions + rng.normal(0, 1, n)
    order = rng.permutation(n)  # rows in any order: the sequence says when each was measured
    assert order_correlation(residual[order], seq[order]) == pytest.approx(order_correlation(residual, seq))
    # without the sequence the same values are noise
    assert abs(order_correlation(residual[order], seq)) < 0.05


def test_order_correlation_refuses_what_it_cannot_use():
    with pytest.raises(DatasetError, match="sequence"):
        order_correlation(np.zeros(5), [1, 2, np.nan, 4, 5])
    with pytest.raises(ValueError, match="max_lag"):
        order_correlation(np.zeros(5), np.arange(5), max_lag=0)
    with pytest.raises(ValueError, match="2 finite of 3"):
        order_correlation(np.array([0.1, np.inf, 0.2]), np.arange(3))
    with pytest.raises(ValueError, match="at least 3 residuals"):
        order_correlation(np.zeros(2), np.arange(2))
