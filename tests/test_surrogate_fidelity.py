"""benchmarks/surrogate_fidelity.py on small synthetic Accel-NASBench records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

from accelnas.core.model import count_macs
from accelnas.core.space import sample
from accelnas.surrogates.anb_dataset import PERF_KEYS


def _load():
    return load_benchmark("surrogate_fidelity")


def _write_records(directory: Path, archs, first_number: int, drop_latency: bool = False) -> None:
    """Records whose ZCU102 latency grows with the MACs (the other metrics are constant)."""
    directory.mkdir()
    for i, arch in enumerate(archs):
        perf = {key: {f"{metric}_mean": 100.0, f"{metric}_std": 1.0} for key, (_, metric) in PERF_KEYS.items()}
        latency = {"latency_mean": count_macs(arch, 224) / 1e8, "latency_std": 0.01}
        perf["latency_zcu102"] = None if drop_latency else latency
        record = {"architecture": arch.to_config(), "metrics": {"val_top1": 70.0}, "platform_perf": perf}
        (directory / f"result_{first_number + i}.json").write_text(json.dumps(record))


def test_train_and_test_directories_drop_shared_architectures(tmp_path, capsys):
    archs = sample(340, 5)
    _write_records(tmp_path / "train", archs[:300], 0)
    _write_records(tmp_path / "test", archs[280:], 300)  # 20 also in train, 40 new
    out = tmp_path / "fidelity.json"
    args = ["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--only", "latency_zcu102"]
    assert _load().main([*args, "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == {"latency_zcu102"}
    assert figures["latency_zcu102"]["n_test"] == 40
    assert figures["latency_zcu102"]["r2"] > 0.99 and figures["latency_zcu102"]["kendall_tau"] > 0.95
    captured = capsys.readouterr()
    assert "20 test architectures also in train were dropped" in captured.err
    assert "fitted 1 of 1 targets" in captured.out


def test_target_without_test_rows_is_reported_not_fitted(tmp_path, capsys):
    archs = sample(60, 6)
    _write_records(tmp_path / "train", archs[:50], 0)
    _write_records(tmp_path / "test", archs[50:], 50, drop_latency=True)
    out = tmp_path / "fidelity.json"
    args = ["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--only", "latency_zcu102"]
    assert _load().main([*args, "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == {"latency_zcu102": {"r2": None, "kendall_tau": None, "n_test": 0}}
    assert "n/a (under 2 test rows)" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["all shared", "missing"])
def test_unusable_sources_exit_with_one_line(tmp_path, capsys, case):
    archs = sample(30, 7)
    _write_records(tmp_path / "train", archs[:20], 0)
    _write_records(tmp_path / "test", archs[:10] if case == "all shared" else archs[20:], 100)
    test_dir = tmp_path / ("nowhere" if case == "missing" else "test")
    args = ["--train", str(tmp_path / "train"), "--test", str(test_dir), "--only", "latency_zcu102"]
    with pytest.raises(SystemExit) as raised:
        _load().main(args)
    assert raised.value.code == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    expected = {"all shared": "nothing left to test", "missing": "not found"}[case]
    assert message.startswith("error: ") and expected in message


def test_a_target_that_cannot_be_fitted_is_reported_and_the_others_measured(tmp_path, capsys):
    archs = sample(340, 8)
    _write_records(tmp_path / "train", archs[:300], 0)
    _write_records(tmp_path / "test", archs[300:], 300)
    # only 5 training records carry a ZCU102 throughput: too few to fit that target
    for f in sorted((tmp_path / "train").glob("result_*.json"))[5:]:
        record = json.loads(f.read_text())
        record["platform_perf"]["throughput_zcu102"] = None
        f.write_text(json.dumps(record))
    out = tmp_path / "fidelity.json"
    args = ["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"),
            "--only", "throughput_zcu102,latency_zcu102", "--json", str(out)]  # fmt: skip
    assert _load().main(args) == 0
    figures = json.loads(out.read_text())
    assert figures["throughput_zcu102"]["r2"] is None and "at least 8" in figures["throughput_zcu102"]["error"]
    assert figures["latency_zcu102"]["r2"] > 0.99
    assert "fitted 1 of 2 targets" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "expected"),
    [(("--json", "{tmp}"), "argument --json: {tmp} is a folder"),
     (("--seed", "-1"), "argument --seed: must be within 0..2147483647, got -1")],
)  # fmt: skip
def test_an_output_that_is_a_folder_or_a_negative_seed_is_refused_before_fitting(tmp_path, capsys, option, expected):
    args = ["--split", str(tmp_path / "not-read"), *(o.format(tmp=tmp_path) for o in option)]
    with pytest.raises(SystemExit) as raised:
        _load().main(args)
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected.format(tmp=tmp_path))


def test_benchmark_json_outputs_refuse_a_folder(tmp_path):
    """cpu_measurement writes its JSON after minutes of measuring: a folder is refused first."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_measurement.py"
    result = subprocess.run([sys.executable, str(script), "--json", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"argument --json: {tmp_path} is a folder")


def test_benchmark_json_output_may_be_an_existing_file_in_a_folder_it_cannot_add_to(tmp_path):
    """/dev/null and /dev/stdout are written in place, as is a kept file in a read-only folder."""
    from test_store import _unprivileged

    shelf = tmp_path / "shelf"
    shelf.mkdir()
    kept = shelf / "kept.json"
    kept.write_text("")
    kept.chmod(0o666)
    check = "import sys; from accelnas.core import cli_options as o; print(getattr(o, sys.argv[1])(sys.argv[2]))"
    shelf.chmod(0o555)
    try:
        cases = (("output_file", kept), ("output_file", shelf / "new.json"), ("output_figure", kept))
        command = [*_unprivileged(), sys.executable, "-c", check]
        runs = [subprocess.run([*command, kind, str(path)], capture_output=True, text=True) for kind, path in cases]
    finally:
        shelf.chmod(0o755)
    assert runs[0].returncode == 0 and runs[0].stdout.strip() == str(kept), runs[0].stderr
    for refused in runs[1:]:  # a new file, or a figure saved through a new file beside it
        assert refused.returncode != 0 and f"cannot write in {shelf}" in refused.stderr


@pytest.mark.parametrize(
    ("extra", "code", "expected"),
    [(["--test-fraction", "0.01"], 1, "error: --test-fraction 0.01 of 30 architectures leaves no test architectures"),
     (["--test-fraction", "0.99"], 1, "leaves no training architectures"),
     (["--train", "{train}"], 2, "give --train and --test, or --split")],
)  # fmt: skip
def test_a_split_without_test_or_training_rows_or_with_train_is_refused(tmp_path, capsys, extra, code, expected):
    _write_records(tmp_path / "train", sample(30, 9), 0)
    args = ["--split", str(tmp_path / "train"), "--only", "latency_zcu102"]
    with pytest.raises(SystemExit) as raised:
        _load().main([*args, *(e.format(train=tmp_path / "train") for e in extra)])
    assert raised.value.code == code
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_test_fraction_without_split_is_refused(tmp_path, capsys):
    _write_records(tmp_path / "train", sample(30, 9), 0)
    _write_records(tmp_path / "test", sample(10, 8), 30)
    args = ["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--test-fraction", "0.5"]
    with pytest.raises(SystemExit) as raised:
        _load().main(args)
    assert raised.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("--test-fraction goes with --split (--train and --test are the split)")
    )


def test_json_replaces_an_existing_file_whole(tmp_path):
    """The figures are written to a new file moved over the old one: a reader (here a hard link to the old
    file) never sees it half-rewritten, and a kill midway leaves the old figures."""
    archs = sample(60, 5)
    _write_records(tmp_path / "train", archs[:40], 0)
    _write_records(tmp_path / "test", archs[40:], 40)
    out, old = tmp_path / "fidelity.json", tmp_path / "old.json"
    out.write_text('{"old": true}\n')
    old.hardlink_to(out)
    args = ["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--only", "latency_zcu102"]
    assert _load().main([*args, "--json", str(out)]) == 0
    assert "latency_zcu102" in json.loads(out.read_text())
    assert json.loads(old.read_text()) == {"old": True}
