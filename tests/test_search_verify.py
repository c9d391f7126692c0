"""Closing the loop: measuring a found front on the CPU target and comparing with predictions."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from scipy import stats

from accelnas.core.model import count_macs
from accelnas.core.space import FEATURE_NAMES, sample
from accelnas.search.report import FrontFileError, read_front
from accelnas.search.verify import spread
from accelnas.surrogates import artifact
from accelnas.surrogates.fit import fit_surrogate

FAST = ("--input-size", "32", "--batch-size", "4", "--precision", "0.05", "--max-seconds", "0.3",
        "--warmup-seconds", "0.1", "--threads", "1")  # fmt: skip


def _small_archs(n):
    """Cheap architectures (few layers) so that measuring them takes seconds."""
    return sorted(sample(200, 21), key=lambda a: count_macs(a, 32))[:n]


@pytest.fixture(scope="module")
def front_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("front")
    archs = _small_archs(3)
    rows = [{"id": a.id, **a.to_config(), "throughput@dev": 1e5 / count_macs(a, 224) * 1e6} for a in archs]
    pd.DataFrame(rows).to_csv(out / "front.csv", index=False)
    objectives = [{"name": "throughput@dev", "maximize": True, "unit": "images/s", "target": "dev/sim"}]
    (out / "front.json").write_text(json.dumps({"objectives": objectives}))
    return out


def _one_line_error(result, fragment):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]


def test_verify_measures_stores_and_compares(front_dir, tmp_path):
    db = tmp_path / "campaign.sqlite"
    out = tmp_path / "report"
    args = ("verify", str(front_dir / "front.csv"), "--db", str(db), "--limit", "2", *FAST)
    result = run_cli(*args, "--against", "throughput@dev", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 architectures measured on cpu/onnxruntime (throughput)" in result.stdout
    assert "predictions are for dev/sim, not cpu/onnxruntime" in result.stdout
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT arch_id, value FROM results WHERE status='ok' AND metric='throughput'"))
    report = json.loads((out / "verify.json").read_text())
    front = pd.read_csv(front_dir / "front.csv")
    chosen = front.iloc[spread(list(front["id"]), 2)]
    assert sorted(stored) == sorted(chosen["id"]) == sorted(r["id"] for r in report["architectures"])
    assert all(r["measured"] == stored[r["id"]] for r in report["architectures"])
    predicted = dict(zip(chosen["id"], chosen["throughput@dev"], strict=True))
    assert all(r["predicted"] == pytest.approx(predicted[r["id"]]) for r in report["architectures"])
    assert report["prediction_target"] == "dev/sim" and not report["same_target"]
    measured = [r["measured"] for r in report["architectures"]]
    expected_tau = stats.kendalltau(measured, [r["predicted"] for r in report["architectures"]]).statistic
    assert report["statistics"]["kendall_tau"] == pytest.approx(expected_tau)
    assert "median_relative_error" not in report["statistics"]
    assert (out / "verify.csv").is_file() and (out / "verify.png").stat().st_size > 5_000

    # a surrogate of the measured target itself: errors become comparable; stored results are reused
    frame = pd.DataFrame(
        [
            {"arch_id": a.id, **a.to_config(), "target": "cpu/onnxruntime", "metric": "throughput",
             "value": 4e8 / count_macs(a, 32), "unit": "images/s"}
            for a in sample(40, 8)
        ]
    )  # fmt: skip
    surrogate = tmp_path / "cpu-surrogate"
    artifact.save(fit_surrogate(frame, "cpu/onnxruntime", "throughput", family="additive").artifact, surrogate)
    again = run_cli(*args, "--surrogate", str(surrogate), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stderr and "relative error median" in again.stdout
    report = json.loads((out / "verify.json").read_text())
    assert report["same_target"] and report["prediction_target"] == "cpu/onnxruntime"
    pred = np.array([r["predicted"] for r in report["architectures"]])
    meas = np.array([r["measured"] for r in report["architectures"]])
    assert report["statistics"]["median_relative_error"] == pytest.approx(float(np.median(np.abs(pred - meas) / meas)))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2
    # a surrogate of the target fitted under other settings (another input size, say): errors are not comparable
    elsewhere = tmp_path / "cpu-surrogate-elsewhere"
    other = frame.assign(settings_key="0123456789abcdef")
    artifact.save(fit_surrogate(other, "cpu/onnxruntime", "throughput", family="additive").artifact, elsewhere)
    mismatch = run_cli(*args, "--surrogate", str(elsewhere), "--out", str(out))
    assert mismatch.returncode == 0, mismatch.stderr
    assert "fitted under settings 0123456789abcdef, the measurements are under" in mismatch.stdout
    report = json.loads((out / "verify.json").read_text())
    assert not report["same_target"] and "median_relative_error" not in report["statistics"]
    # a backend option, as for collect: other settings, so measured again and stored beside the others
    basic = run_cli(*args, "--surrogate", str(surrogate), "--option", "graph_optimization=basic", "--out", str(out))
    assert basic.returncode == 0, basic.stderr
    with sqlite3.connect(db) as conn:
        keys = conn.execute("SELECT settings_key, COUNT(*) FROM results GROUP BY settings_key").fetchall()
        assert sorted(n for _, n in keys) == [2, 2]
        settings = [json.loads(row[0]) for row in conn.execute("SELECT DISTINCT settings FROM results")]
    assert sorted(dict(s["options"]).get("graph_optimization", "all") for s in settings) == ["all", "basic"]


def test_verify_bad_input_is_one_line(front_dir, tmp_path):
    db = str(tmp_path / "c.sqlite")
    front = str(front_dir / "front.csv")
    _one_line_error(run_cli("verify", front, "--db", db, "--against", "accuracy"), "accuracy cannot be measured")
    _one_line_error(run_cli("verify", front, "--db", db, "--against", "throughput@zcu102"), "no column")
    unknown = run_cli("verify", front, "--db", db, "--against", "throughput@dev", "--option", "fusion=1")
    _one_line_error(unknown, "target cpu/onnxruntime has no option 'fusion'")
    assert unknown.returncode == 2 and not Path(db).exists()
    _one_line_error(
        run_cli("verify", front, "--db", db, "--against", "throughput@dev", "--target", "gpu/none"),
        "unknown target 'gpu/none'",
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("id,throughput@dev\n1311-6321-6521-6331-6531-6551-6311,3\n")
    _one_line_error(run_cli("verify", str(bad), "--db", db, "--against", "throughput@dev"), "row 1: invalid")
    named_like_output = tmp_path / "verify.csv"  # a front saved as verify.csv in the output folder
    named_like_output.write_bytes((front_dir / "front.csv").read_bytes())
    clash = run_cli("verify", str(named_like_output), "--db", db, "--against", "throughput@dev")
    _one_line_error(clash, "which is its input")
    assert clash.returncode == 2 and named_like_output.read_bytes() == (front_dir / "front.csv").read_bytes()
    assert not Path(db).exists()  # refused before measuring


def test_read_front_rejects_malformed_files(front_dir, tmp_path):
    archs, frame = read_front(front_dir / "front.csv")
    assert [a.id for a in archs] == frame["id"].tolist() and len(archs) == 3
    bad = tmp_path / "bad.csv"
    with pytest.raises(FrontFileError, match="not found"):
        read_front(bad)
    bad.write_text("name,value\nx,1\n")
    with pytest.raises(FrontFileError, match="needs an 'id' column"):
        read_front(bad)
    bad.write_text("id\n")
    with pytest.raises(FrontFileError, match="no architectures"):
        read_front(bad)
    mismatch = frame.copy()
    mismatch.loc[0, FEATURE_NAMES[0]] = 4 if mismatch.loc[0, FEATURE_NAMES[0]] != 4 else 6
    mismatch.to_csv(bad, index=False)
    with pytest.raises(FrontFileError, match=r"row 1: id .* does not match"):
        read_front(bad)
    frame.iloc[[0, 1, 0]].to_csv(bad, index=False)
    with pytest.raises(FrontFileError, match=rf"rows 1 and 3 name one architecture \({archs[0].id}\)"):
        read_front(bad)
    assert spread(archs, 2) == [0, 2] and spread(archs, None) == [0, 1, 2]


def test_verify_usage(front_dir, tmp_path):
    db = str(tmp_path / "c.sqlite")
    front = str(front_dir / "front.csv")
    usage = run_cli("verify", front, "--db", db)
    assert usage.returncode == 2 and "--against OBJECTIVE" in usage.stderr


def test_verify_stops_when_the_device_goes_away(tmp_path, monkeypatch):
    from test_campaign import FAST as SETTINGS
    from test_campaign import Vanishing

    from accelnas.core.errors import TargetUnavailableError
    from accelnas.core.plugins import load_registry
    from accelnas.core.store import Store
    from accelnas.search.verify import PredictionSource, verify

    archs = sample(3, seed=11)
    monkeypatch.setenv("ACCELNAS_TEST_GONE_AT", archs[1].id)
    registry = load_registry([])
    registry.register(Vanishing(), "vanishing")
    target = registry.target("fake/vanishing")
    source = PredictionSource("latency", "dev/sim", "a test", np.array([1.0, 2.0, 3.0]))
    with Store(tmp_path / "c.sqlite") as store:
        with pytest.raises(TargetUnavailableError, match=r"^stopped, fake/vanishing is unavailable: .* 2 measurement"):
            verify(registry, target, archs, source, SETTINGS, store)
        assert [r["arch_id"] for r in store.results()] == [archs[0].id]  # what was measured is kept


def test_front_column_of_the_measured_target_compares_errors_only_under_its_settings(tmp_path):
    from accelnas.surrogates.build import build_all

    frame = pd.DataFrame(
        [
            {"arch_id": a.id, **a.to_config(), "target": "cpu/onnxruntime", "metric": "throughput",
             "value": 4e8 / count_macs(a, 224), "unit": "images/s", "settings_key": "0123456789abcdef"}
            for a in sample(60, 8)
        ]
    )  # fmt: skip
    build_all(frame, tmp_path / "bench", family="additive", echo=lambda line: None)
    found = run_cli("search", "--benchmark", str(tmp_path / "bench"), "--objectives", "throughput@cpu/onnxruntime",
                    "--budget", "30", "--out", str(tmp_path / "front"))  # fmt: skip
    assert found.returncode == 0, found.stderr
    result = run_cli("verify", str(tmp_path / "front" / "front.csv"), "--db", str(tmp_path / "c.sqlite"),
                     "--against", "throughput@cpu/onnxruntime", "--limit", "1", *FAST)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "fitted under settings 0123456789abcdef, the measurements are under" in result.stdout
    report = json.loads((tmp_path / "front" / "verify.json").read_text())
    assert report["prediction_target"] == "cpu/onnxruntime" and not report["same_target"]
    assert report["prediction_settings_key"] == "0123456789abcdef"
    assert "median_relative_error" not in report["statistics"]


def test_verify_checks_the_front_folder_it_writes_to_before_measuring(front_dir, tmp_path):
    import subprocess
    import sys

    from test_store import _unprivileged

    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "front.csv").write_bytes((front_dir / "front.csv").read_bytes())
    db = tmp_path / "c.sqlite"
    shelf.chmod(0o555)
    try:
        result = subprocess.run(
            [*_unprivileged(), sys.executable, "-m", "accelnas.core.cli", "verify", str(shelf / "front.csv"),
             "--db", str(db), "--against", "throughput@dev", "--limit", "1", *FAST],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        shelf.chmod(0o755)
    _one_line_error(result, "pass --out")
    assert result.returncode == 2 and not db.exists()  # refused before measuring


def test_rewriting_a_verification_with_one_measured_drops_the_old_plot(tmp_path):
    from accelnas.search.verify import Verification, write_verification

    def verification(n):
        archs = sample(n, 4)
        return Verification(
            target="cpu/onnxruntime", metric="throughput", unit="images/s", against="throughput@dev",
            prediction_target="dev/sim", settings_key="k", ids=[a.id for a in archs],
            predicted=np.arange(1.0, n + 1), measured=np.arange(2.0, n + 2),
            rows=[{"id": a.id, "predicted": 1.0, "measured": 2.0} for a in archs],
        )  # fmt: skip

    assert (tmp_path / "verify.png") in write_verification(verification(3), tmp_path)
    assert (tmp_path / "verify.png").is_file()
    paths = write_verification(verification(1), tmp_path)
    assert (tmp_path / "verify.png") not in paths and not (tmp_path / "verify.png").exists()
    assert json.loads((tmp_path / "verify.json").read_text())["architectures"][0]["id"] == sample(1, 4)[0].id
