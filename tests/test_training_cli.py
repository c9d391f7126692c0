"""`accelnas train`, `proxy-search` and `proxy-analyse` as a user runs them (tiny problems)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_helpers import run_cli

from accelnas.core.space import Architecture, parse_architecture
from accelnas.core.store import Store

ARCHS = [
    "1310-1310-1310-1310-1310-1310-1310",
    "1311-4310-1310-1311-1310-1310-1310",
    "1310-1310-4310-1310-1310-1310-1310",
]
TINY = {
    "name": "tiny", "epochs": 1, "batch_size": 64, "optimizer": "adamw", "lr": 0.02, "resolution": 16,
    "data_fraction": 0.1, "label_smoothing": 0.0, "hflip": False, "bn_recalibration_images": 256,
}  # fmt: skip
ENV = {"OMP_NUM_THREADS": "1"}


def test_train_stores_and_resumes(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    db = tmp_path / "acc.sqlite"
    args = ["train", "--recipe", str(recipe), "--arch", ARCHS[0], "--image-size", "16", "--db", str(db)]
    first = run_cli(*args, "--threads", "1", env=ENV)
    assert first.returncode == 0, first.stderr
    assert "1 trained" in first.stdout and "target train/digits16" in first.stdout
    assert "top-1" in first.stderr  # progress line
    second = run_cli(*args, env=ENV)
    assert second.returncode == 0 and "1 already stored" in second.stdout
    with Store(db, create=False) as store:
        rows = store.results(target="train/digits16")
    assert [r["arch_id"] for r in rows] == [ARCHS[0]] and rows[0]["metric"] == "accuracy"
    assert rows[0]["extra"]["device"].endswith(", 1 threads)")  # --threads reached the training process
    shown = run_cli("status", str(db))
    assert shown.returncode == 0 and "recipe tiny (1 epochs, batch 64)" in shown.stdout, shown.stdout


def test_train_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    db = tmp_path / "ray.sqlite"
    result = run_cli("train", "--ray", "local", "--gpus-per-task", "0", "--cpus-per-task", "1", "--recipe",
                     str(recipe), "--arch", ARCHS[0], "--image-size", "16", "--db", str(db), env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr
    hours = re.search(r"1 trained \((\d+\.\d+) device-hours\), 0 already stored, 0 failed", result.stdout)
    with Store(db, create=False) as store:
        rows = store.results(target="train/digits16")
    assert hours and len(rows) == 1 and float(hours[1]) == pytest.approx(rows[0]["extra"]["device_hours"], abs=1e-4)


def test_train_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 0\n")
    result = run_cli("train", "--recipe", str(bad), "--arch", "b0", "--db", str(tmp_path / "x.sqlite"), env=ENV)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: recipe 'bad': epochs must be an integer in 1..10000, got 0"
    for command in (["train", "--arch", "b0"], ["proxy-search", "--num", "3", "--out", str(tmp_path / "out")]):
        result = run_cli(*command, "--data", str(tmp_path / "nowhere"), "--db", str(tmp_path / "y.db"))
        assert result.returncode == 1 and result.stderr.startswith("error: unknown dataset")
        assert not (tmp_path / "y.db").exists()  # no store is created for data that cannot be read
    ray = run_cli("train", "--arch", "b0", "--ray", "local", "--threads", "1", "--db", str(tmp_path / "x.db"))
    assert ray.returncode == 2 and "Ray tasks take --cpus-per-task" in ray.stderr and not (tmp_path / "x.db").exists()
    ray = run_cli("train", "--arch", "b0", "--ray", "127.0.0.1:1", "--db", str(tmp_path / "x.db"))
    assert ray.returncode == 1 and "cannot reach the Ray cluster" in ray.stderr and not (tmp_path / "x.db").exists()
    ray = run_cli("train", "--arch", "b0", "--ray", "", "--db", str(tmp_path / "x.db"))
    assert ray.returncode == 2 and "--ray '' names no cluster" in ray.stderr and not (tmp_path / "x.db").exists()
    ray = run_cli("train", "--arch", "b0", "--ray", "local", "--device", "cpu", "--db", str(tmp_path / "x.db"))
    assert ray.returncode == 2 and "Ray tasks train on their --gpus-per-task" in ray.stderr
    workers = run_cli("train", "--arch", "b0", "--workers", "-1", "--db", str(tmp_path / "x.db"))
    assert workers.returncode == 2 and "'--workers'" in workers.stderr and not (tmp_path / "x.db").exists()
    for command, option in (("train", "--image-size"), ("proxy-search", "--split-seed")):
        folder = run_cli(command, "--num", "3", "--data", str(tmp_path), option, "64", "--db", str(tmp_path / "x.db"),
                         *(["--out", str(tmp_path / "out")] if command == "proxy-search" else []))  # fmt: skip
        assert folder.returncode == 2, folder.stderr
        assert f"{option} applies to --data digits, not to an image folder" in folder.stderr
    for command in ("train", "proxy-search"):
        digits = run_cli(command, "--num", "3", "--workers", "2", "--db", str(tmp_path / "x.db"),
                         *(["--out", str(tmp_path / "out")] if command == "proxy-search" else []))  # fmt: skip
        assert digits.returncode == 2 and "--workers applies to an image folder, not to --data digits" in digits.stderr
        assert not (tmp_path / "x.db").exists()
    for command in ("train", "proxy-search"):  # a split seed sklearn refuses is a usage error before any store
        seed = run_cli(command, "--num", "3", "--split-seed", "-1", "--db", str(tmp_path / "x.db"),
                       *(["--out", str(tmp_path / "out")] if command == "proxy-search" else []))  # fmt: skip
        assert seed.returncode == 2 and "Invalid value for '--split-seed'" in seed.stderr, seed.stderr
        assert not (tmp_path / "x.db").exists() and not (tmp_path / "out").exists()
    empty = run_cli("proxy-search", "--num", "3", "--reference", "", "--db", str(tmp_path / "x.db"),
                    "--out", str(tmp_path / "out"))  # fmt: skip
    assert empty.returncode == 2 and "recipe file not found" in empty.stderr, empty.stderr  # not the base recipe
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "out").exists()
    listing = run_cli("train", "--list-recipes")
    assert listing.returncode == 0 and "digits-reference" in listing.stdout and "(proxy space)" in listing.stdout


def test_proxy_search_refuses_options_of_a_strategy_it_does_not_run(tmp_path):
    db = tmp_path / "ps.sqlite"
    common = ["--db", str(db), "--out", str(tmp_path / "out"), "--data", str(tmp_path / "nowhere")]  # refused first
    for option, value, strategy in (("--trials", "5", "optuna"), ("--eta", "2", "halving"),
                                    ("--min-archs", "3", "halving")):  # fmt: skip
        result = run_cli("proxy-search", "--num", "3", "--strategy", "grid", option, value, *common)
        assert result.returncode == 2, result.stderr
        assert f"error: {option} applies to --strategy {strategy}, which is not run" in result.stderr
    assert not db.exists()


def test_store_and_reference_file_are_checked_before_the_data_is_read(tmp_path):
    """Reading an image folder can take minutes: a store or reference file that cannot be used is
    reported first (here an image folder without images would otherwise be the error)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a store\n")
    for part in ("train", "val"):  # the layout of an image folder, without the images reading it would fail on
        (tmp_path / "images" / part).mkdir(parents=True)
    images, out = str(tmp_path / "images"), str(tmp_path / "out")
    for args in (["train", "--arch", "b0"], ["proxy-search", "--num", "3", "--out", out]):
        result = run_cli(*args, "--data", images, "--db", str(notes))
        assert result.returncode == 1
        assert result.stderr.strip() == f"error: {notes} is not a usable accelnas store: file is not a database"
    missing = tmp_path / "missing.csv"
    result = run_cli("proxy-search", "--num", "3", "--data", images, "--reference-file", str(missing),
                     "--db", str(tmp_path / "ps.sqlite"), "--out", out)  # fmt: skip
    assert result.returncode == 1 and result.stderr.strip() == f"error: reference file not found: {missing}"
    assert not (tmp_path / "ps.sqlite").exists()
    result = run_cli("proxy-search", "--num", "3", "--data", images, "--reference", str(missing.with_suffix(".yaml")),
                     "--db", str(tmp_path / "ps.sqlite"), "--out", out)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: recipe file not found: {missing.with_suffix('.yaml')}"


def test_proxy_search_with_reference_file(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"base": TINY, "axes": {"data_fraction": [0.05, 0.1], "resolution": [12, 16]}}))
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"arch_id": ARCHS, "accuracy": [50.0, 60.0, 55.0]}).to_csv(ref, index=False)
    out = tmp_path / "out"
    result = run_cli(
        "proxy-search", "--space", str(space), "--reference-file", str(ref), *[x for a in ARCHS for x in ("--arch", a)],
        "--image-size", "16", "--db", str(tmp_path / "ps.sqlite"), "--out", str(out), "--strategy", "grid",
        "--strategy", "halving", "--threshold", "-1", "--min-archs", "2", "--eta", "2", "--cost", "cpu", env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "grid: 4 candidates fully scored, 12 trainings" in result.stdout
    assert result.stdout.count(" CPU-s (") == 2 and " s (" not in result.stdout  # --cost cpu: CPU seconds
    for name in ("candidates.csv", "comparison.csv", "pareto.png", "summary.json", "chosen.yaml"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen"] and [s["strategy"] for s in summary["strategies"]] == ["grid", "halving"]
    assert summary["strategies"][1]["trainings"] < summary["strategies"][0]["trainings"]
    chosen = yaml.safe_load((out / "chosen.yaml").read_text())
    assert chosen["name"] == summary["chosen"] and chosen["epochs"] == 1
    frame = pd.read_csv(out / "candidates.csv")
    assert set(frame["strategy"]) == {"grid", "halving"} and frame["tau"].between(-1, 1).all()
    with Store(tmp_path / "ps.sqlite", create=False) as store:
        assert len(store.results(target="train/digits16")) == 12  # 4 candidates x 3 architectures, shared
    assert "holds accuracies on" not in result.stderr  # a plain CSV names no dataset
    flat = tmp_path / "flat.csv"  # a reference that ranks nothing: no candidate reaches any τ
    rows = [{"arch_id": a, **Architecture.from_string(a).to_config(), "target": "train/digits32", "metric": "accuracy",
             "value": 50.0, "settings_key": "k"} for a in ARCHS]  # fmt: skip
    pd.DataFrame(rows).to_csv(flat, index=False)  # an export of accuracies on other data than --image-size 16
    again = run_cli(
        "proxy-search", "--space", str(space), "--reference-file", str(flat),
        *[x for a in ARCHS for x in ("--arch", a)], "--arch", "b0", "--image-size", "16", "--db",
        str(tmp_path / "ps.sqlite"), "--out", str(out), "--strategy", "grid", "--threshold", "-1", env=ENV,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    b0 = parse_architecture("b0").id
    assert (
        f"warning: 1 of the 4 architectures have no accuracy in {flat} and are left out of the search "
        f"(first: {b0})" in again.stderr
    )
    assert json.loads((out / "summary.json").read_text())["chosen"] is None
    assert not (out / "chosen.yaml").exists() and "removed" in again.stderr  # not the earlier run's choice
    assert f"{flat} holds accuracies on train/digits32, but the proxies train on train/digits16" in again.stderr
    before = ref.read_bytes()
    (out / "comparison.csv").write_bytes(before)  # a reference kept where the search writes its tables
    clash = run_cli(
        "proxy-search", "--space", str(space), "--reference-file", str(out / "comparison.csv"),
        *[x for a in ARCHS for x in ("--arch", a)], "--image-size", "16", "--db", str(tmp_path / "ps2.sqlite"),
        "--out", str(out), "--strategy", "grid", env=ENV,
    )  # fmt: skip
    assert clash.returncode == 2 and "which is one of its inputs" in clash.stderr
    assert (out / "comparison.csv").read_bytes() == before and not (tmp_path / "ps2.sqlite").exists()


def test_proxy_analyse_writes_tables_and_plot(tmp_path):
    stages = [Architecture.from_string(a).stages for a in ARCHS]
    for recipe, offset in (("quick", 0.0), ("slow", 5.0)):
        for seed in (1, 2):
            rows = [[i, 1, i, 0, 60 + offset + i + 0.1 * seed, 85, 400, 5, 100 * (1 + offset),
                     *[x.e for x in s], *[x.k for x in s], *[x.l for x in s], *[x.se for x in s]]
                    for i, s in enumerate(stages)]  # fmt: skip
            pd.DataFrame(rows).to_csv(tmp_path / f"{recipe}-seed{seed}.csv", header=False, index=False)
    out = tmp_path / "analysis"
    result = run_cli("proxy-analyse", str(tmp_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "3 architectures; recipes: quick, slow" in result.stdout
    assert "quick costs 0.167x slow (6.0x cheaper)" in result.stdout
    for name in ("ablation_tau.csv", "ablation_summary.csv", "ablation_scatter.png"):
        assert (out / name).is_file()
    taus = pd.read_csv(out / "ablation_tau.csv")
    assert (taus["tau"] == 1.0).all()  # the synthetic recipes rank the three architectures identically
    summary = pd.read_csv(out / "ablation_summary.csv")
    assert summary["comparison"].tolist() == ["quick vs slow", "quick seed vs seed", "slow seed vs seed"]
    assert summary["seconds_per_model"].isna().tolist() == [True, False, False]  # each cost on its recipe's row
    assert summary["seconds_per_model"].iloc[2] == 6 * summary["seconds_per_model"].iloc[1]
    seed_rows = [line.split() for line in result.stdout.splitlines() if "seed vs seed" in line]
    assert [row[4] for row in seed_rows] == ["-", "-"]  # no seed-mean τ of a recipe against itself
    single = tmp_path / "single"
    single.mkdir()
    (single / "quick-seed1.csv").write_bytes((tmp_path / "quick-seed1.csv").read_bytes())
    one = run_cli("proxy-analyse", str(single), "--out", str(single / "out"))
    assert one.returncode == 0, one.stderr
    assert pd.read_csv(single / "out" / "ablation_tau.csv").columns.tolist() == taus.columns.tolist()  # no pairs
    missing = run_cli("proxy-analyse", str(tmp_path / "none"))
    assert missing.returncode != 0
    (single / "quick-seed01.csv").write_bytes((tmp_path / "slow-seed1.csv").read_bytes())
    twice = run_cli("proxy-analyse", str(single))
    assert twice.returncode == 1
    assert twice.stderr.strip() == f"error: quick-seed01.csv and quick-seed1.csv in {single} are both seed 1 of quick"


def test_proxy_search_benchmark_rejects_an_output_folder_that_is_a_file(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "proxy_search_digits.py"
    taken = tmp_path / "taken"
    taken.write_text("")
    result = subprocess.run([sys.executable, str(script), "--out", str(taken)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"argument --out: {taken} is not a folder")
    (tmp_path / "proxy-search-digits").write_text("")  # the default --out, taken by a file
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("argument --out: proxy-search-digits is not a folder")


@pytest.mark.parametrize(
    ("option", "expected"),
    [(["--num", "2"], "argument --num: a proxy search ranks architectures: give at least 3, got 2"),
     (["--threshold", "nan"], "argument --threshold: must be within [-1, 1], got nan"),
     (["--threshold", "1.5"], "argument --threshold: must be within [-1, 1], got 1.5")],
)  # fmt: skip
def test_proxy_search_benchmark_refuses_what_the_search_refuses_before_training(tmp_path, capsys, option, expected):
    """Too few architectures to rank used to fail after the reference was trained; a threshold no τ can
    reach (or nan) ran the whole search to choose nothing."""
    from conftest import load_benchmark

    script = load_benchmark("proxy_search_digits")
    with pytest.raises(SystemExit) as raised:
        script.main(["--out", str(tmp_path / "out"), *option])
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected)
    assert not (tmp_path / "out").exists()
