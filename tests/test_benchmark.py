"""Building a benchmark directory and querying it, from Python and the command line."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

from accelnas.core.errors import AccelnasError, DatasetError, SurrogateError
from accelnas.core.model import count_macs
from accelnas.core.records import Measurement
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.core.store import Store
from accelnas.surrogates.benchmark import Benchmark
from accelnas.surrogates.build import build_all
from accelnas.surrogates.recipes import recipe_for


def _frame(n=160):
    rows = []
    for a in sample(n, 5):
        macs = count_macs(a, 224) / 1e6
        base = {"arch_id": a.id, **a.to_config(), "settings_key": "k"}
        rows.append(
            base | {"target": "dev/sim", "metric": "latency", "value": 0.01 * macs + a.num_layers, "unit": "ms"}
        )
        rows.append(base | {"target": "dev/sim", "metric": "throughput", "value": 1e5 / macs, "unit": "images/s"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    index = build_all(_frame(), out, test_fraction=0.2, echo=lambda line: None)
    assert len(index["surrogates"]) == 2
    return out


def test_build_writes_index_models_and_plots(bench_dir):
    index = json.loads((bench_dir / "benchmark.json").read_text())
    assert index["fitted_on"] == "all"
    for entry in index["surrogates"]:
        where = bench_dir / entry["path"]
        assert (where / "surrogate.json").is_file() and (where / "predicted_vs_true.png").is_file()
        # both targets are additive over layers (throughput in 1/y): an additive family wins
        assert entry["test"]["kendall_tau"] > 0.95 and entry["family"] in {"additive", "hybrid"}


def test_query_one_and_many(bench_dir):
    bench = Benchmark.load(bench_dir)
    assert bench.pairs() == [("dev/sim", "latency"), ("dev/sim", "throughput")]
    one = bench.query(EFFICIENTNET_B0, device="dev", metric="latency")
    assert len(one) == 1 and one.unit == "ms" and one.std[0] == 0
    expected = 0.01 * count_macs(EFFICIENTNET_B0) / 1e6 + EFFICIENTNET_B0.num_layers
    assert one.mean[0] == pytest.approx(expected, rel=0.05)
    many = bench.query([EFFICIENTNET_B0.id, *sample(50, 8)], device="dev/sim", metric="throughput")
    assert many.mean.shape == (51,) and np.all(many.mean > 0)
    config = EFFICIENTNET_B0.to_config()  # a config dict is one architecture, alone or in a list
    assert bench.query(config, device="dev", metric="latency").mean[0] == one.mean[0]
    assert bench.query([config, "b0"], device="dev", metric="latency").mean.tolist() == [one.mean[0]] * 2
    with pytest.raises(AccelnasError, match="expected an id, a JSON config or a dict, got 7"):
        bench.query([7], device="dev", metric="latency")
    with pytest.raises(AccelnasError, match="no surrogate for zcu102:latency"):
        bench.query(EFFICIENTNET_B0, device="zcu102", metric="latency")
    none = bench.query([], device="dev", metric="throughput")
    assert len(none) == 0 and none.mean.shape == none.std.shape == (0,) and none.unit == "images/s"
    with pytest.raises(AccelnasError, match="no surrogate for zcu102:latency"):
        bench.query([], device="zcu102", metric="latency")


def test_two_surrogates_for_one_pair_are_an_error(bench_dir, tmp_path):
    entry = json.loads((bench_dir / "benchmark.json").read_text())["surrogates"][0]
    for copy in ("a", "b"):  # no index: every surrogate directory below the root is loaded
        shutil.copytree(bench_dir / entry["path"], tmp_path / copy)
    with pytest.raises(SurrogateError, match=f"two surrogates for {entry['target']}:{entry['metric']}: .*a and .*b"):
        Benchmark.load(tmp_path)


def test_a_damaged_surrogate_fails_only_the_queries_that_use_it(bench_dir, tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(bench_dir, copy)
    entries = {e["metric"]: e for e in json.loads((copy / "benchmark.json").read_text())["surrogates"]}
    damaged = copy / entries["latency"]["path"] / "surrogate.json"
    meta = json.loads(damaged.read_text())
    damaged.write_text(json.dumps(meta | {"model_sha256": "0" * 64}))
    bench = Benchmark.load(copy)  # opening reads identities, not models
    assert bench.pairs() == [("dev/sim", "latency"), ("dev/sim", "throughput")]
    assert bench.query(EFFICIENTNET_B0, device="dev", metric="throughput").mean[0] > 0
    with pytest.raises(SurrogateError, match="does not match its recorded checksum") as raised:
        bench.query(EFFICIENTNET_B0, device="dev", metric="latency")
    assert str(damaged) in str(raised.value)
    queried = run_cli("query", "b0", "--benchmark", str(copy), "--device", "dev", "--metric", "throughput")
    assert queried.returncode == 0 and "images/s" in queried.stdout, queried.stderr
    broken = run_cli("query", "b0", "--benchmark", str(copy), "--device", "dev", "--metric", "latency")
    assert broken.returncode == 1 and broken.stderr.count("\n") == 1 and str(damaged) in broken.stderr
    both = run_cli("query", "b0", "--benchmark", str(copy), "--json")  # the healthy rows, then the error
    assert both.returncode == 1 and str(damaged) in both.stderr and both.stderr.count("\n") == 1
    assert [(r["target"], r["metric"]) for r in json.loads(both.stdout)] == [("dev/sim", "throughput")]


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_unreadable_metadata_or_folder_fails_only_its_own_pair(bench_dir, tmp_path, damage):
    copy = tmp_path / "bench"
    shutil.copytree(bench_dir, copy)
    entries = {e["metric"]: e for e in json.loads((copy / "benchmark.json").read_text())["surrogates"]}
    folder = copy / entries["latency"]["path"]
    if damage == "truncated":
        meta = folder / "surrogate.json"
        meta.write_text(meta.read_text()[:200])
    else:
        shutil.rmtree(folder)
    bench = Benchmark.load(copy)  # the pairs are the index's
    assert bench.pairs() == [("dev/sim", "latency"), ("dev/sim", "throughput")]
    assert bench.query(EFFICIENTNET_B0, device="dev", metric="throughput").mean[0] > 0
    with pytest.raises(SurrogateError, match=str(folder)):
        bench.query(EFFICIENTNET_B0, device="dev", metric="latency")
    both = run_cli("query", "b0", "--benchmark", str(copy), "--json")
    assert both.returncode == 1 and str(folder) in both.stderr and both.stderr.count("\n") == 1
    assert [(r["target"], r["metric"]) for r in json.loads(both.stdout)] == [("dev/sim", "throughput")]


def test_an_index_that_misnames_a_surrogate_is_caught_when_it_loads(bench_dir, tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(bench_dir, copy)
    index = json.loads((copy / "benchmark.json").read_text())
    for entry in index["surrogates"]:
        entry["metric"] = {"latency": "throughput", "throughput": "latency"}[entry["metric"]]
    (copy / "benchmark.json").write_text(json.dumps(index))
    with pytest.raises(SurrogateError, match="holds dev/sim:latency, but the benchmark index lists it as dev/sim:thr"):
        Benchmark.load(copy).query(EFFICIENTNET_B0, device="dev", metric="throughput")


def test_index_paths_must_stay_inside_the_benchmark(bench_dir, tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(bench_dir, copy)
    index = json.loads((copy / "benchmark.json").read_text())
    moved = copy / index["surrogates"][0]["path"]
    outside = tmp_path / "outside"
    shutil.move(moved, outside)
    os.symlink(outside, moved)
    for path in ("../outside", str(outside), index["surrogates"][0]["path"]):  # parent, absolute, a link
        index["surrogates"][0]["path"] = path
        (copy / "benchmark.json").write_text(json.dumps(index))
        with pytest.raises(SurrogateError, match=rf"surrogates\[0\] path .* leads outside {copy}"):
            Benchmark.load(copy)
    moved.unlink()
    shutil.move(outside, moved)
    assert Benchmark.load(copy).pairs() == [("dev/sim", "latency"), ("dev/sim", "throughput")]


def test_find_by_device_or_metric(bench_dir):
    bench = Benchmark.load(bench_dir)
    assert [(s.target, s.metric) for s in bench.find("dev")] == bench.pairs()
    assert [(s.target, s.metric) for s in bench.find(metric="throughput")] == [("dev/sim", "throughput")]
    assert bench.find("zcu102") == [] and len(bench.find()) == 2


def test_cli_query_by_device_alone(bench_dir):
    queried = run_cli("query", "b0", "--benchmark", str(bench_dir), "--device", "dev", "--json")
    assert queried.returncode == 0, queried.stderr
    assert sorted(r["metric"] for r in json.loads(queried.stdout)) == ["latency", "throughput"]
    unknown = run_cli("query", "b0", "--benchmark", str(bench_dir), "--device", "zcu102")
    assert unknown.returncode == 2 and "no surrogate for device 'zcu102' (available: dev/sim:latency" in unknown.stderr
    unknown = run_cli("query", "b0", "--benchmark", str(bench_dir), "--metric", "speed")
    assert unknown.returncode == 2 and "'speed' is not one of 'accuracy', 'throughput', 'latency'" in unknown.stderr
    capital = run_cli("query", "b0", "--benchmark", str(bench_dir), "--metric", "Latency", "--json")
    assert capital.returncode == 0 and [r["metric"] for r in json.loads(capital.stdout)] == ["latency"]
    loaded = Benchmark([str(p.parent) for p in sorted(bench_dir.rglob("surrogate.json"))])  # directories as text
    assert loaded.pairs() == Benchmark.load(bench_dir).pairs()
    for bad in (None, 5, b"b0"):  # bytes iterate as numbers, not as architectures
        with pytest.raises(TypeError, match="an architecture or a list of them"):
            loaded.query(bad, device="dev", metric="latency")
    empty = run_cli("query", "b0", "--benchmark", str(bench_dir), "--device", "")
    assert empty.returncode == 2 and "no surrogate for device '' (available:" in empty.stderr
    ignored = run_cli("query", "b0", "--surrogate", str(bench_dir), "--device", "dev")
    assert ignored.returncode == 2 and "--benchmark" in ignored.stderr
    mistaken = run_cli("query", "b0", "--surrogate", str(bench_dir))
    assert mistaken.returncode == 2 and "is a benchmark directory (it holds benchmark.json)" in mistaken.stderr


def test_query_names_the_directory_when_two_surrogates_answer_one_pair(bench_dir, tmp_path):
    entries = {e["metric"]: e for e in json.loads((bench_dir / "benchmark.json").read_text())["surrogates"]}
    first, second = tmp_path / "first", tmp_path / "second"
    for copy in (first, second):
        shutil.copytree(bench_dir / entries["latency"]["path"], copy)
    both = run_cli("query", "b0", "--surrogate", str(first), "--surrogate", str(second))
    lines = both.stdout.splitlines()
    assert both.returncode == 0 and len(lines) == 2
    assert lines[0].endswith(f"[{first}]") and lines[1].endswith(f"[{second}]")
    rows = json.loads(run_cli("query", "b0", "--surrogate", str(first), "--surrogate", str(second), "--json").stdout)
    assert [r["surrogate"] for r in rows] == [str(first), str(second)]
    again = run_cli("query", "b0", "--surrogate", str(first), "--surrogate", str(first) + "/")
    assert again.returncode == 2 and f"--surrogate {first} is given twice" in again.stderr
    alone = run_cli("query", "b0", "--surrogate", str(first))
    assert alone.returncode == 0 and "[" not in alone.stdout  # one surrogate per pair: nothing to tell apart


def test_rebuilding_some_targets_keeps_the_others(tmp_path):
    build_all(_frame(80), tmp_path, targets=[("dev/sim", "latency")], family="additive", echo=lambda line: None)
    index = build_all(_frame(80), tmp_path, targets=[("dev/sim", "throughput")], family="additive",
                      echo=lambda line: None)  # fmt: skip
    assert sorted((e["target"], e["metric"]) for e in index["surrogates"]) == [("dev/sim", "latency"),
                                                                               ("dev/sim", "throughput")]  # fmt: skip
    assert Benchmark.load(tmp_path).pairs() == [("dev/sim", "latency"), ("dev/sim", "throughput")]
    assert index["seed"] == 0 and index["fitted_on"] == "all"  # both builds used the same settings
    again = build_all(_frame(80), tmp_path, targets=[("dev/sim", "latency")], family="additive", seed=7,
                      refit_all=False, echo=lambda line: None)  # fmt: skip
    assert sorted(e["metric"] for e in again["surrogates"]) == ["latency", "throughput"]  # replaced, not repeated
    # each entry keeps the settings it was built with; the top level no longer speaks for both
    build = {e["metric"]: (e["seed"], e["fitted_on"]) for e in again["surrogates"]}
    assert build == {"latency": (7, "train"), "throughput": (0, "all")}
    assert again["seed"] is None and again["fitted_on"] is None and again["test_fraction"] == 0.1
    index = json.loads((tmp_path / "benchmark.json").read_text())
    index["surrogates"].append({"path": "dev__sim/latency"})  # a hand-made entry without its pair
    (tmp_path / "benchmark.json").write_text(json.dumps(index))
    last = build_all(_frame(80), tmp_path, targets=[("dev/sim", "latency")], family="additive", echo=lambda line: None)
    assert sorted(e["metric"] for e in last["surrogates"]) == ["latency", "throughput"]  # the others are kept


def test_a_build_refuses_an_unfittable_pair_before_writing_and_indexes_each_saved_surrogate(tmp_path, monkeypatch):
    import accelnas.surrogates.build as build

    frame = _frame(40)
    few = frame[frame["metric"] == "latency"].head(5).assign(target="dev/few")
    with pytest.raises(AccelnasError, match="dev/few:latency has 5 architectures; at least 8"):
        build_all(pd.concat([frame, few]), tmp_path / "a", family="additive", echo=lambda line: None)
    assert not (tmp_path / "a").exists()  # not even an empty folder

    fitted = build.fit_surrogate

    def second_fails(frame, target, metric, **kwargs):
        if metric == "throughput":
            raise MemoryError("out of memory")
        return fitted(frame, target, metric, **kwargs)

    monkeypatch.setattr(build, "fit_surrogate", second_fails)
    with pytest.raises(MemoryError):
        build_all(frame, tmp_path / "b", family="additive", echo=lambda line: None)
    assert Benchmark.load(tmp_path / "b").pairs() == [("dev/sim", "latency")]  # what was saved is queryable
    assert not list((tmp_path / "b").glob(".*.partial"))


def test_a_build_refuses_drift_correction_it_cannot_make_before_writing(tmp_path):
    frame = _frame(120).assign(sequence=lambda f: np.arange(len(f)))
    tiny = frame[frame["metric"] == "latency"].head(40).assign(target="dev/tiny")  # fitted after dev/sim
    with pytest.raises(DatasetError, match=r"dev/tiny:latency: drift correction needs at least 100 rows"):
        build_all(pd.concat([frame, tiny]), tmp_path / "a", family="additive", drift="sequence", echo=lambda line: None)
    assert not (tmp_path / "a").exists()
    with pytest.raises(DatasetError, match=r"dev/sim:latency: drift correction needs the dataset's 'sequence'"):
        build_all(frame.drop(columns="sequence"), tmp_path / "b", family="additive", drift="sequence")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"my": "own results"}', "no 'surrogates' field"),  # another program's benchmark.json
        ('{"format": "accelnas-benchmark", "format_version": 99, "surrogates": []}', "version 99"),
        ('{"format": "accelnas-benchmark", "surrogates": [', "corrupt benchmark index"),
    ],
)
def test_a_build_refuses_an_index_it_would_replace_without_its_entries(tmp_path, text, reason):
    (tmp_path / "benchmark.json").write_text(text)
    with pytest.raises(SurrogateError, match=f"cannot build into {tmp_path}: .*{reason}"):
        build_all(_frame(40), tmp_path, family="additive", echo=lambda line: None)
    assert (tmp_path / "benchmark.json").read_text() == text  # left as it was, and nothing fitted beside it
    assert [p.name for p in tmp_path.iterdir()] == ["benchmark.json"]


def test_cli_build_refuses_the_index_before_reading_its_source(tmp_path):
    """--from-anb downloads Accel-NASBench by default: an index the build would refuse is refused first."""
    (tmp_path / "benchmark.json").write_text('{"my": "own results"}')
    result = run_cli("surrogates", "build", "--from-anb", str(tmp_path / "not-there"), "--out", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot build into {tmp_path}: ") and "not-there" not in result.stderr


def test_cli_from_anb_alone_builds_from_the_public_archive(tmp_path, monkeypatch):
    """`surrogates build --from-anb`, as the README gives it, reads the public archive (as import-anb does)."""
    from click.testing import CliRunner

    import accelnas.surrogates.anb_dataset as anb
    from accelnas.core.cli import cli

    asked = []

    def import_anb(source, **kwargs):
        asked.append(source)
        raise AccelnasError("stop here")

    monkeypatch.setattr(anb, "import_anb", import_anb)
    result = CliRunner().invoke(cli, ["surrogates", "build", "--from-anb", "--out", str(tmp_path / "anb")])
    assert isinstance(result.exception, AccelnasError) and asked == [anb.ANB_URL]


@pytest.mark.parametrize(
    "args", [["surrogates", "build", "--from-anb", "", "--out"], ["import-anb", " ", "--out"]], ids=["build", "import"]
)
def test_cli_an_empty_anb_source_is_refused_not_taken_for_the_public_archive(tmp_path, monkeypatch, args):
    """An empty source (an unset shell variable) is a usage error; only leaving it out means the public archive."""
    from click.testing import CliRunner

    import accelnas.surrogates.anb_dataset as anb
    from accelnas.core.cli import cli

    asked = []
    monkeypatch.setattr(anb, "import_anb", lambda source, **kwargs: asked.append(source))
    result = CliRunner().invoke(cli, [*args, str(tmp_path / "anb")])
    assert result.exit_code == 2 and "names no source" in result.output and asked == []
    assert not (tmp_path / "anb").exists()


def test_two_builds_into_one_directory_keep_each_others_surrogates(tmp_path, monkeypatch):
    import accelnas.surrogates.build as build

    frame, other = _frame(40), _frame(40).assign(target="dev/other")
    fitted, calls = build.fit_surrogate, []

    def meanwhile(frame, target, metric, **kwargs):  # another build finishes between this one's surrogates
        calls.append((target, metric))
        if len(calls) == 2:
            build_all(other, tmp_path, targets=[("dev/other", "latency")], family="additive", echo=lambda line: None)
        return fitted(frame, target, metric, **kwargs)

    monkeypatch.setattr(build, "fit_surrogate", meanwhile)
    build_all(frame, tmp_path, family="additive", echo=lambda line: None)
    assert Benchmark.load(tmp_path).pairs() == [("dev/other", "latency"), ("dev/sim", "latency"),
                                                ("dev/sim", "throughput")]  # fmt: skip


def test_corrupt_index(tmp_path):
    (tmp_path / "benchmark.json").write_text("[1, 2")
    with pytest.raises(SurrogateError, match="corrupt benchmark index"):
        Benchmark.load(tmp_path)
    (tmp_path / "benchmark.json").write_bytes(bytes(range(128, 256)))
    with pytest.raises(SurrogateError, match="corrupt benchmark index"):
        Benchmark.load(tmp_path)
    wrong = {
        json.dumps({"surrogates": [{"target": "a/b"}]}): r"surrogates\[0\] has no 'path' string",
        json.dumps({"surrogates": [{"path": "a"}, 3]}): r"surrogates\[1\] has no 'path' string",
        json.dumps({"surrogates": {"path": "a"}}): "'surrogates' must be a list",
        json.dumps({"models": []}): "no 'surrogates' field",
        json.dumps(["a"]): "not a JSON object",
    }
    for text, reason in wrong.items():
        (tmp_path / "benchmark.json").write_text(text)
        with pytest.raises(SurrogateError, match=r"corrupt benchmark index .*: " + reason):
            Benchmark.load(tmp_path)
    for meta in ({"format": "other", "surrogates": []}, {"format_version": 99, "surrogates": []}):
        (tmp_path / "benchmark.json").write_text(json.dumps(meta))
        with pytest.raises(SurrogateError, match="not an accelnas benchmark index"):
            Benchmark.load(tmp_path)
    with pytest.raises(SurrogateError, match="no benchmark"):
        Benchmark.load(tmp_path / "missing")


def test_cli_build_from_db_and_query(tmp_path):
    db = tmp_path / "campaign.sqlite"
    with Store(db) as store:
        for a in sample(40, 2):
            ms = 0.02 * count_macs(a, 64) / 1e6
            for target in ("cpu/onnxruntime", "cpu/torch"):
                store.record_ok(a, target, "key", {"input_size": 64}, Measurement(
                    metric="latency", unit="ms", mean=ms, std=0.01, ci_low=ms * 0.99, ci_high=ms * 1.01,
                    samples=[ms], batch_size=1, input_size=64, precision_reached=True))  # fmt: skip
    out = tmp_path / "bench"
    built = run_cli("surrogates", "build", "--from-db", str(db), "--out", str(out), "--ensemble", "3",
                    "--test-fraction", "0.2")  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "cpu/onnxruntime" in built.stdout and "τ=" in built.stdout and "built 2 surrogates" in built.stdout
    # each target says it has started (on stderr) before its line of figures (on stdout)
    started = [line for line in built.stderr.splitlines() if "fitting" in line]
    assert started == [
        "[1/2] cpu/onnxruntime latency: fitting (auto x3) ...",
        "[2/2] cpu/torch latency: fitting (auto x3) ...",
    ]
    again = run_cli("surrogates", "build", "--from-db", db.name, "--out", str(out), "--target", "cpu/torch",
                    cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0 and "built 1 surrogate in" in again.stdout and "(1 built earlier kept" in again.stdout
    index = json.loads((out / "benchmark.json").read_text())
    assert {e["target"]: e["source"]["db"] for e in index["surrogates"]} == {  # readable from any folder
        "cpu/onnxruntime": str(db),
        "cpu/torch": str(db),
    }
    queried = run_cli("query", "b0", "--benchmark", str(out), "--device", "cpu", "--metric", "latency", "--json")
    assert queried.returncode == 0, queried.stderr
    rows = json.loads(queried.stdout)
    assert rows[0]["arch"] == EFFICIENTNET_B0.id and rows[0]["mean"] > 0 and rows[0]["std"] >= 0
    usage = run_cli("surrogates", "build", "--out", str(out))
    assert usage.returncode == 2 and "exactly one of" in usage.stderr


def test_build_with_optuna_tuning(tmp_path):
    index = build_all(_frame(80), tmp_path, family="xgboost", tune_seconds=3, test_fraction=0.2,
                      echo=lambda line: None)  # fmt: skip
    for entry in index["surrogates"]:
        params = entry["recipe"]["params"]
        assert entry["family"] == "xgboost" and {"max_depth", "learning_rate", "n_estimators"} <= set(params)


def test_build_from_anb_records_follows_the_paper_recipes(tmp_path):
    """The nine Accel-NASBench targets from result_N.json records: accuracy is the hybrid+GP blend."""
    records = tmp_path / "anb_dataset_jsons"
    records.mkdir()
    rng = np.random.default_rng(0)
    for i, a in enumerate(sample(60, 11)):
        macs = count_macs(a, 224) / 1e6
        perf = {}
        for key in ("a100", "3090", "tpuv2", "tpuv3", "zcu102", "vck190"):
            perf[f"throughput_{key}"] = {"throughput_mean": 4e5 / macs, "throughput_std": 1.0}
        for key in ("zcu102", "vck190"):
            perf[f"latency_{key}"] = {"latency_mean": 0.01 * macs + a.num_layers, "latency_std": 0.01}
        top1 = 70.0 + 5.0 * np.tanh(macs / 400.0) + rng.normal(0, 0.05)
        record = {"architecture": a.to_config(), "metrics": {"val_top1": top1}, "platform_perf": perf}
        (records / f"result_{i}.json").write_text(json.dumps(record))
    out = tmp_path / "anb"
    built = run_cli("surrogates", "build", "--from-anb", records.name, "--out", str(out), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    index = json.loads((out / "benchmark.json").read_text())
    assert {e["source"]["anb"] for e in index["surrogates"]} == {str(records)}  # readable from any folder
    families = {(e["target"], e["metric"]): e["family"] for e in index["surrogates"]}
    assert len(families) == 9 and families[("imagenet/anb", "accuracy")] == "hybrid+gp"
    assert families[("zcu102/anb", "latency")] == "hybrid"
    bench = Benchmark.load(out)
    archs = sample(30, 12)
    predicted = bench.query(archs, metric="accuracy").mean
    truth = [70.0 + 5.0 * np.tanh(count_macs(a, 224) / 1e6 / 400.0) for a in archs]
    assert np.corrcoef(predicted, truth)[0, 1] > 0.9
    for entry in index["surrogates"]:  # seed-ensemble recipes keep their members; a query shows their spread
        members = recipe_for(entry["target"], entry["metric"])["ensemble"]
        assert entry["ensemble"] == members
        if members > 1:
            spread = bench.query(archs, device=entry["target"], metric=entry["metric"]).std
            assert np.all(spread >= 0) and np.any(spread > 0)
    assert any(recipe_for(t, m)["ensemble"] > 1 for t, m in families)


def test_query_speed_times_the_surrogates_of_the_chosen_device_or_metric(bench_dir, capsys):
    from conftest import load_benchmark

    speed = load_benchmark("query_speed")
    assert speed.main([str(bench_dir), "--device", "dev", "--batch", "20", "--repeats", "1"]) == 0
    assert speed.main([str(bench_dir), "--metric", "latency", "--batch", "20", "--repeats", "1"]) == 0
    lines = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.startswith("dev/")]
    assert lines == [["dev/sim", "latency"], ["dev/sim", "throughput"], ["dev/sim", "latency"]]
    with pytest.raises(AccelnasError, match="no surrogate for device 'gpu'"):
        speed.main([str(bench_dir), "--device", "gpu"])


def test_index_writers_at_the_same_moment_lose_no_entry(tmp_path):
    import threading

    from accelnas.surrogates.build import _write_index

    entries = []
    for i in range(12):
        (tmp_path / f"dev{i}" / "latency").mkdir(parents=True)
        (tmp_path / f"dev{i}" / "latency" / "surrogate.json").write_text("{}")
        entries.append({"target": f"dev{i}/x", "metric": "latency", "path": f"dev{i}/latency"})
    barrier = threading.Barrier(len(entries))

    def write(entry):
        barrier.wait()
        _write_index(tmp_path, [entry], "now", 1.0)

    threads = [threading.Thread(target=write, args=(e,)) for e in entries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index = json.loads((tmp_path / "benchmark.json").read_text())
    assert sorted(e["target"] for e in index["surrogates"]) == sorted(e["target"] for e in entries)


def test_a_later_target_too_small_to_choose_a_family_is_refused_before_anything_is_written(tmp_path):
    frame = _frame(80)
    few = set(frame["arch_id"].unique()[:8])
    frame = frame[(frame["metric"] == "latency") | frame["arch_id"].isin(few)]  # throughput: 8 architectures
    out = tmp_path / "bench"
    # holding out 70% leaves throughput 2 training architectures, too few to cross-validate the families
    with pytest.raises(DatasetError, match="at least 4 training architectures, got 2"):
        build_all(frame, out, test_fraction=0.7, echo=lambda line: None)
    assert not out.exists()  # latency, first in line, was not fitted and saved meanwhile
    index = build_all(frame, out, test_fraction=0.7, family="additive", echo=lambda line: None)  # a named family fits
    assert [e["n_train"] for e in index["surrogates"]] == [24, 2]
