"""The end-to-end demo at a reduced size, then export / fit / query on its results."""

import json

import pandas as pd
from cli_helpers import run_cli

from accelnas.core.space import EFFICIENTNET_B0


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--num", "12", "--input-size", "32", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Kendall τ" in result.stdout and "input 32x32" in result.stdout
    assert "[12/12]" in result.stderr  # progress was shown
    report = json.loads((out / "report.json").read_text())
    assert report["measured"] == 24 and report["failed"] == 0
    for metric in ("throughput", "latency"):
        assert -1 <= report["surrogates"][metric]["kendall_tau"] <= 1
        assert report["surrogates"][metric]["n_test"] == 3
    assert (out / "predicted_vs_measured.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = pd.read_parquet(out / "dataset" / "cpu__onnxruntime.parquet")
    assert len(data) == 24 and set(data["metric"]) == {"throughput", "latency"}
    assert EFFICIENTNET_B0.id in set(data["arch_id"])

    # the same flow through the individual commands
    exported = run_cli("export", "--db", str(out / "campaign.sqlite"), "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    assert pd.read_csv(tmp_path / "export" / "cpu__onnxruntime.csv").shape[0] == 24
    fitted = run_cli("fit", "--data", str(tmp_path / "export"), "--target", "cpu/onnxruntime", "--metric", "latency",
                     "--out", str(tmp_path / "lat"), "--test-fraction", "0.25")  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    assert (tmp_path / "lat" / "predicted_vs_measured.png").exists()
    queried = run_cli("query", "b0", EFFICIENTNET_B0.id, "--surrogate", str(tmp_path / "lat"), "--json")
    assert queried.returncode == 0, queried.stderr
    rows = json.loads(queried.stdout)
    assert len(rows) == 2 and rows[0]["mean"] == rows[1]["mean"] > 0 and rows[0]["unit"] == "ms"

    # re-running the demo resumes from the store
    again = run_cli("demo", "--num", "12", "--input-size", "32", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "report.json").read_text())["already_stored"] == 24


def test_demo_with_an_unknown_target_creates_nothing(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", str(out), "--target", "gpu/nothing")
    assert result.returncode != 0 and "unknown target 'gpu/nothing'" in result.stderr
    assert not out.exists()


def test_undefined_metrics_read_as_not_available():
    from accelnas.core.demo import _fmt

    assert _fmt(float("nan")) == _fmt(None) == "n/a" and _fmt(0.91234) == "0.912"
