"""The end-to-end demo at a reduced size, then export / fit / query on its results."""

import json

import pandas as pd
import pytest
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
    # the report names its files relative to its own folder, so the folder can be moved whole
    surrogates = [s["surrogate"] for s in report["surrogates"].values()]
    named = [report["store"], report["plot"], *report["dataset"], *surrogates]
    assert report["plot"] == "predicted_vs_measured.png" and all((out / name).exists() for name in named)
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


def _exact_device(monkeypatch, export=None):
    """Make the demo measure on a fake ``cpu/exact`` target whose values follow the MACs (instantly);
    ``export`` (of the architecture) may raise."""
    from conftest import Device, exact_measurement

    from accelnas.core import demo
    from accelnas.core.model import count_macs
    from accelnas.core.plugins import PluginRegistry
    from accelnas.core.records import Target

    target, current = Target("cpu", "exact", needs_model=False), {}

    def value(metric, settings):
        macs = count_macs(current["arch"], settings.input_size)
        batch = settings.batch_for(target) if metric == "throughput" else 1
        return exact_measurement(metric, macs / 1e6, batch=batch, input_size=settings.input_size)

    def exported(arch):
        current["arch"] = arch
        if export is not None:
            export(arch)

    def registry():
        reg = PluginRegistry()
        reg.register(Device(target, lambda s: value("latency", s), lambda s: value("throughput", s), exported), "exact")
        return reg

    monkeypatch.setattr(demo, "load_registry", registry)


def test_a_rerun_with_another_seed_reports_on_its_own_architectures(tmp_path, monkeypatch):
    """The store keeps an earlier run's architectures; the dataset, surrogates and report are this run's."""
    from accelnas.core.demo import run_demo

    _exact_device(monkeypatch)
    out = tmp_path / "demo"
    for seed in (0, 1):
        report = run_demo(out, num=12, seed=seed, target_name="cpu/exact", echo=lambda line: None)
    assert report["measured"] == 22 and report["already_stored"] == 2  # EfficientNet-B0 was stored by seed 0
    for metric in ("throughput", "latency"):
        assert report["surrogates"][metric]["n_train"] + report["surrogates"][metric]["n_test"] == 12
    data = pd.read_csv(out / "dataset" / "cpu__exact.csv")
    assert data["arch_id"].nunique() == 12 and len(data) == 24


def test_a_target_gone_mid_demo_stops_it_before_anything_is_fitted(tmp_path, monkeypatch):
    from accelnas.core.demo import run_demo
    from accelnas.core.errors import TargetUnavailableError

    exports = []

    def export(arch):
        exports.append(arch)
        if len(exports) > 10:
            raise TargetUnavailableError("the board does not answer")

    _exact_device(monkeypatch, export)
    out = tmp_path / "demo"
    with pytest.raises(TargetUnavailableError, match=r"cpu/exact is unavailable: .*board .*4 measurement\(s\) pending"):
        run_demo(out, num=12, target_name="cpu/exact", echo=lambda line: None)
    assert sorted(p.name for p in out.iterdir()) == ["campaign.sqlite"]  # no dataset, surrogates or report


def test_a_demo_whose_measurements_failed_names_the_failure(tmp_path, monkeypatch):
    from accelnas.core.demo import run_demo
    from accelnas.core.errors import DatasetError

    def export(arch):
        raise RuntimeError("the runtime is broken")

    _exact_device(monkeypatch, export)
    out = tmp_path / "demo"
    with pytest.raises(DatasetError, match=r"24 measurement\(s\) failed, first: .*the runtime is broken"):
        run_demo(out, num=12, target_name="cpu/exact", echo=lambda line: None)
    assert sorted(p.name for p in out.iterdir()) == ["campaign.sqlite"]
