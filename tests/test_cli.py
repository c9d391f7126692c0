"""The command line: help everywhere, and one-line errors with a non-zero exit for bad input."""

import json

import click
import pytest
from cli_helpers import run_cli

from accelnas.core.cli import cli
from accelnas.core.model import count_macs, count_params
from accelnas.core.space import EFFICIENTNET_B0
from accelnas.core.store import Store

COMMANDS = [
    "info",
    "sample",
    "plugins",
    "targets",
    "collect",
    "export",
    "fit",
    "query",
    "demo",
    "import-anb",
    "surrogates",
    "search",
    "verify",
    "search-space",
    "merge",
    "status",
    "train",
    "proxy-search",
    "proxy-analyse",
]


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
    return paths


def test_expected_commands_exist():
    assert set(COMMANDS) <= {path[0] for path in _command_paths(cli)}


@pytest.mark.parametrize("path", [(), *_command_paths(cli)], ids=lambda p: " ".join(p) or "accelnas")
def test_help(path):
    result = run_cli(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_every_option_and_command_says_what_it_is_for():
    ctx = click.Context(cli)
    undocumented = []
    for path in _command_paths(cli):
        command = cli
        for name in path:
            command = command.get_command(ctx, name)
        if not (command.help or "").strip():
            undocumented.append(" ".join(path))
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                undocumented.append(f"{' '.join(path)} {param.opts[0]}")
    assert undocumented == []


def test_info_b0_json():
    result = run_cli("info", "b0", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["id"] == EFFICIENTNET_B0.id
    assert data["params"] == count_params(EFFICIENTNET_B0) and data["macs"] == count_macs(EFFICIENTNET_B0)


def test_targets_and_plugins_listing():
    targets = run_cli("targets")
    assert targets.returncode == 0 and "cpu/onnxruntime" in targets.stdout and "available" in targets.stdout
    assert "options: graph_optimization" in targets.stdout
    plugins = run_cli("plugins", "--json")
    entry = next(p for p in json.loads(plugins.stdout) if p["name"] == "cpu_ort")
    assert "measure_latency" in entry["hooks"] and entry["version"]


def _assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_invalid_architecture_string():
    _assert_one_line_error(run_cli("info", "1311-6321-6521-6331-6531-6551-6311"), "block5_l=5")
    _assert_one_line_error(run_cli("info", "not-an-arch"), "invalid architecture id")
    _assert_one_line_error(run_cli("info", '{"block0_e": 2}'), "invalid architecture")


def test_an_unknown_surrogate_family_is_a_usage_error(tmp_path):
    for command in (("fit", "--data", "d.csv", "--target", "t", "--out", str(tmp_path)),
                    ("surrogates", "build", "--from-data", "d.csv", "--out", str(tmp_path))):  # fmt: skip
        result = run_cli(*command, "--family", "forest")
        assert result.returncode == 2 and "'forest' is not one of auto, xgboost" in result.stderr


def test_unknown_target(tmp_path):
    result = run_cli("collect", "--target", "gpu/nothing", "--num", "1", "--db", str(tmp_path / "c.sqlite"))
    _assert_one_line_error(result, "unknown target 'gpu/nothing'", "cpu/onnxruntime")


@pytest.mark.parametrize("selection", ["random", "space-filling", "active"])
def test_collect_refuses_more_architectures_than_the_space_holds_before_opening_the_store(tmp_path, selection):
    db = tmp_path / "x.sqlite"
    result = run_cli("collect", "--num", "200000000000", "--selection", selection, "--db", str(db))
    assert result.returncode == 2 and "--num 200000000000 exceeds the" in result.stderr, result.stderr
    assert "unexpected" not in result.stderr and not db.exists()


def test_sample_refuses_more_architectures_than_the_space_holds():
    result = run_cli("sample", "--num", "200000000000")
    assert result.returncode == 2 and not result.stdout, result.stderr
    _assert_one_line_error(result, "num 200000000000 exceeds the", "architectures the space has left")
    assert "unexpected" not in result.stderr


def test_unknown_plugin_in_env():
    _assert_one_line_error(run_cli("targets", env={"ACCELNAS_PLUGINS": "cpu_ort,nope"}), "unknown plugin 'nope'")


def test_missing_and_corrupt_store(tmp_path):
    _assert_one_line_error(
        run_cli("export", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "o")), "not found"
    )
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"garbage" * 1000)
    _assert_one_line_error(run_cli("export", "--db", str(corrupt), "--out", str(tmp_path / "o")), "corrupt.sqlite")
    before = corrupt.read_bytes()
    _assert_one_line_error(run_cli("collect", "--num", "1", "--db", str(corrupt)), "not a usable accelnas store")
    assert corrupt.read_bytes() == before  # never touched


def test_malformed_dataset(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arch_id,value\nx,1\n")
    _assert_one_line_error(
        run_cli(
            "fit",
            "--data",
            str(bad),
            "--target",
            "cpu/onnxruntime",
            "--metric",
            "latency",
            "--out",
            str(tmp_path / "s"),
        ),
        "missing column",
    )
    cfg = EFFICIENTNET_B0.to_config() | {"block2_k": 4}
    header = ",".join(["arch_id", *cfg, "target", "metric", "value"])
    row = ",".join([EFFICIENTNET_B0.id, *map(str, cfg.values()), "cpu/onnxruntime", "latency", "1.0"])
    bad.write_text(header + "\n" + row + "\n")
    _assert_one_line_error(
        run_cli(
            "fit",
            "--data",
            str(bad),
            "--target",
            "cpu/onnxruntime",
            "--metric",
            "latency",
            "--out",
            str(tmp_path / "s"),
        ),
        "row 0",
        "block2_k=4",
    )
    _assert_one_line_error(
        run_cli(
            "fit",
            "--data",
            str(tmp_path / "nothing.parquet"),
            "--target",
            "cpu/onnxruntime",
            "--metric",
            "latency",
            "--out",
            str(tmp_path / "s"),
        ),
        "not found",
    )


def test_unusable_paths_and_empty_stores_are_one_line_errors(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("collect", "--num", "1", "--input-size", "32", "--db", str(blocker / "c.sqlite"))
    _assert_one_line_error(result, "a-file")
    assert "unexpected" not in result.stderr
    empty = tmp_path / "empty.sqlite"
    Store(empty).close()
    built = run_cli("surrogates", "build", "--from-db", str(empty), "--out", str(tmp_path / "b"))
    _assert_one_line_error(built, "no measurements to fit surrogates on")


def test_multi_line_messages_become_one_line(monkeypatch, capsys):
    import accelnas.core.cli as cli_module
    from accelnas.core.errors import PluginError

    def broken():
        raise PluginError("plugin 'x' raised in register_targets:\n  ValueError: no\n")

    monkeypatch.setattr(cli_module, "_registry", broken)
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["targets"])
    assert exited.value.code != 0
    assert capsys.readouterr().err == "error: plugin 'x' raised in register_targets: / ValueError: no\n"


def test_ctrl_c_says_what_is_kept(monkeypatch, capsys, tmp_path):
    import accelnas.core.cli as cli_module

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "_registry", interrupted)
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["collect", "--num", "1", "--db", str(tmp_path / "c.sqlite")])
    assert exited.value.code == 130
    assert "interrupted; every result measured so far is stored" in capsys.readouterr().err
    # a command that measures nothing says nothing of measurements
    for command in (["targets"], ["plugins"]):
        with pytest.raises(SystemExit) as exited:
            cli_module.main(command)
        assert exited.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"
    monkeypatch.setattr(cli_module, "_arch_list", lambda texts: interrupted())
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["query", "b0", "--benchmark", "anywhere"])
    assert exited.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"


def test_corrupt_surrogate(tmp_path):
    (tmp_path / "surrogate.json").write_text("{broken")
    _assert_one_line_error(run_cli("query", "b0", "--surrogate", str(tmp_path)), "corrupt surrogate metadata")
    _assert_one_line_error(run_cli("query", "b0", "--surrogate", str(tmp_path / "none")), "no surrogate")


def test_bad_settings_are_usage_errors(tmp_path):
    result = run_cli("collect", "--num", "1", "--input-size", "4", "--db", str(tmp_path / "c.sqlite"))
    assert result.returncode == 2 and "input size" in result.stderr and "Traceback" not in result.stderr


def test_option_values_parse_as_json_else_text():
    from accelnas.core.cli_options import parse_options

    assert parse_options(("precision=fp32", "count=16", "cuda_graphs=true", "devices=all", "count=16")) == (
        ("count", 16),
        ("cuda_graphs", True),
        ("devices", "all"),
        ("precision", "fp32"),
    )
    assert parse_options(("shape=[1, 2]",)) == (("shape", "[1, 2]"),)
    with pytest.raises(click.BadParameter, match=r"count given twice \(8, then 16\)"):
        parse_options(("count=8", "count=16"))  # which one was meant is not for the command to guess
    with pytest.raises(click.BadParameter, match=r"x given twice \(1, then True\)"):
        parse_options(("x=1", "x=true"))  # equal in Python, two settings keys


def test_bad_option_is_a_usage_error(tmp_path):
    db = tmp_path / "c.sqlite"
    result = run_cli("collect", "--arch", "b0", "--option", "novalue", "--db", str(db))
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr and "Traceback" not in result.stderr
    assert not db.exists()


def test_options_are_part_of_each_result(tmp_path):
    import sqlite3

    db = tmp_path / "c.sqlite"
    args = ["collect", "--arch", "b0", "--metric", "latency", "--input-size", "32", "--max-seconds", "0.3"]
    args += ["--warmup-seconds", "0.05", "--threads", "1", "--db", str(db)]
    for extra in ([], ["--option", "graph_optimization=basic"]):
        result = run_cli(*args, *extra)
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT settings_key, settings, provenance FROM results WHERE status = 'ok'").fetchall()
    assert len(rows) == 2 and rows[0][0] != rows[1][0]  # a different option is a different measurement
    seen = {
        (json.loads(s)["options"].get("graph_optimization"), json.loads(p)["graph_optimization"]) for _, s, p in rows
    }
    assert seen == {(None, "ORT_ENABLE_ALL"), ("basic", "ORT_ENABLE_BASIC")}


def test_an_option_the_target_does_not_read_is_a_one_line_error(tmp_path):
    db = tmp_path / "c.sqlite"
    result = run_cli("collect", "--arch", "b0", "--option", "graph_optimisation=basic", "--db", str(db))
    _assert_one_line_error(result, "cpu/onnxruntime has no option 'graph_optimisation'", "graph_optimization")
    result = run_cli("collect", "--target", "cpu/torch", "--arch", "b0", "--option", "precision=fp32", "--db", str(db))
    _assert_one_line_error(result, "cpu/torch has no option 'precision' (its options: none)")
    result = run_cli("collect", "--arch", "b0", "--option", "graph_optimization=bogus", "--db", str(db))
    _assert_one_line_error(result, "cpu/onnxruntime: option graph_optimization must be one of all, extended")
    assert result.returncode == 2
    assert not db.exists()  # refused before the store is opened


def _main_exit(capsys, *args: str) -> tuple[int, str]:
    """Run the CLI in this process; (exit code, stderr)."""
    import accelnas.core.cli as cli_module

    with pytest.raises(SystemExit) as exited:
        cli_module.main(list(args))
    return exited.value.code, capsys.readouterr().err


@pytest.fixture
def small_data(tmp_path):
    """A dataset file and a store holding 12 measured latencies of cpu/x."""
    from accelnas.core import dataset
    from accelnas.core.records import Measurement
    from accelnas.core.space import sample

    db = tmp_path / "c.sqlite"
    with Store(db) as store:
        for i, a in enumerate(sample(12, 3)):
            v = 1.0 + i
            store.record_ok(a, "cpu/x", "k", {"input_size": 32},
                            Measurement("latency", "ms", v, 0.1, v - 0.1, v + 0.1, [v], 1, 32, True))  # fmt: skip
        frame = dataset.from_store(store)
    (path,) = [p for p in dataset.write(frame, tmp_path / "data") if p.suffix == ".parquet"]
    return db, path


FIT = ["fit", "--data", "{data}", "--target", "cpu/x", "--metric", "latency"]

BAD_ARGUMENTS = {
    "plot format": (
        [*FIT, "--out", "{out}", "--plot", "p.txt"],
        "cannot write a .txt figure",
    ),
    "ensemble size": (
        [*FIT, "--out", "{out}", "--ensemble", "1000"],
        "1000 is not in the range",
    ),
    "fit target": (
        ["fit", "--data", "{data}", "--target", "nosuch/x", "--metric", "latency", "--out", "{out}"],
        "no latency rows for target nosuch/x in",
    ),
    "export target": (
        ["export", "--db", "{db}", "--out", "{out}", "--target", "nosuch/x"],
        "has no results for target nosuch/x (has: cpu/x)",
    ),
    "build target": (
        ["surrogates", "build", "--from-db", "{db}", "--out", "{out}", "--target", "cpu/x", "--target", "nosuch"],
        "no data for target nosuch (have: cpu/x)",
    ),
    "status errors": (["status", "{db}", "--errors", "-1"], "-1 is not in the range"),
    "verify limit": (["verify", "{data}", "--target", "cpu/onnxruntime", "--limit", "0"], "0 is not in the range"),
    "image size": (["train", "--arch", "b0", "--db", "{db}", "--image-size", "0"], "0 is not in the range"),
    "cpus without ray": (
        ["train", "--arch", "b0", "--db", "{db}", "--cpus-per-task", "2"],
        "--cpus-per-task applies to Ray tasks",
    ),
    "negative cpus": (
        ["train", "--arch", "b0", "--db", "{db}", "--ray", "local", "--cpus-per-task", "-1"],
        "-1.0 is not in the range",
    ),
    "proxy search archs": (
        [
            "proxy-search",
            "--arch",
            "b0",
            "--arch",
            "1321-6330-4530-1531-4310-6510-1320",
            "--db",
            "{db}",
            "--out",
            "{out}",
        ],
        "give at least 3 (have 2)",
    ),
    "proxy trials": (
        ["proxy-search", "--num", "4", "--db", "{db}", "--out", "{out}", "--trials", "0"],
        "0 is not in the range",
    ),
    # nan passes every comparison: a nan timeout or budget would never run out
    "nan time budget": (["collect", "--num", "1", "--db", "{out}/c.sqlite", "--time-budget", "nan"], "not a finite"),
    "nan task timeout": (
        ["collect", "--num", "1", "--db", "{out}/c.sqlite", "--isolate", "--task-timeout", "nan"],
        "'nan' is not a finite number",
    ),
    "ray retries without ray": (
        ["collect", "--num", "1", "--db", "{out}/c.sqlite", "--ray-max-retries", "5"],
        "--ray-max-retries needs --executor ray",
    ),
    "empty ray address": (["collect", "--num", "1", "--db", "{out}/c.sqlite", "--address", ""], "--address needs"),
    "blank ray address": (
        ["collect", "--num", "1", "--db", "{out}/c.sqlite", "--executor", "ray", "--address", " "],
        "--address ' ' names no cluster",
    ),
    "inf max seconds": (["collect", "--num", "1", "--db", "{out}/c.sqlite", "--max-seconds", "inf"], "not a finite"),
    "nan test fraction": (
        [
            *FIT,
            "--out",
            "{out}",
            "--test-fraction",
            "nan",
        ],
        "'nan' is not a finite number",
    ),
    # an output folder that cannot be made (a file stands in its path) is refused before the work
    "fit out under a file": (
        [*FIT, "--out", "{db}/sur"],
        "c.sqlite is not a folder",
    ),
    "plot under a file": (
        [
            *FIT,
            "--out",
            "{out}",
            "--plot",
            "{db}/p.png",
        ],
        "c.sqlite is not a folder",
    ),
    "export out under a file": (["export", "--db", "{db}", "--out", "{db}/d"], "c.sqlite is not a folder"),
    "verify out under a file": (
        ["verify", "{data}", "--out", "{db}/v", "--db", "{out}/v.sqlite", "--against", "latency"],
        "c.sqlite is not a folder",
    ),
    "search-space out under a file": (["search-space", "--out", "{db}/cs.json"], "c.sqlite is not a folder"),
    # a campaign store that cannot be created is a usage error naming its folder, not a damaged store
    "collect db under a file": (["collect", "--arch", "b0", "--db", "{db}/c.sqlite"], "c.sqlite is not a folder"),
    "merge out under a file": (["merge", "{db}/m.sqlite", "{db}"], "c.sqlite is not a folder"),
    "verify db under a file": (
        ["verify", "{data}", "--out", "{out}", "--db", "{db}/v.sqlite", "--against", "latency"],
        "c.sqlite is not a folder",
    ),
    "train db under a file": (
        ["train", "--arch", "b0", "--db", "{db}/t.sqlite", "--data", "{out}/images"],
        "c.sqlite is not a folder",
    ),
    # an empty file path is the current folder: refused before the work, not a crash when writing
    "fit empty plot": ([*FIT, "--out", "{out}", "--plot", ""], "an empty path names no file"),
    "search-space empty out": (["search-space", "--out", ""], "an empty path names no file"),
    "collect empty db": (["collect", "--arch", "b0", "--db", ""], "an empty path names no file"),
    "merge empty out": (["merge", "", "{db}"], "an empty path names no file"),
    "verify empty front": (["verify", "", "--db", "{out}/v.sqlite", "--against", "latency"], "an empty path names no"),
    "export empty db": (["export", "--db", "", "--out", "{out}"], "an empty path names no file"),
    "status empty db": (["status", ""], "an empty path names no file"),
    "build empty db": (["surrogates", "build", "--from-db", "", "--out", "{out}"], "an empty path names no file"),
    "nan reward exponent": (
        ["search", "--benchmark", "{out}", "--reward", "latency@zcu102=5", "--reward-w", "nan"],
        "'nan' is not a finite number",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, small_data, case):
    db, data = small_data
    args, expected = BAD_ARGUMENTS[case]
    out = tmp_path / "out"
    code, err = _main_exit(capsys, *(a.format(data=data, db=db, out=out) for a in args))
    assert code == 2, err
    assert expected in err.replace("\n", " ")
    assert not out.exists()  # nothing written


def test_export_of_a_target_with_only_failures_is_not_an_argument_error(tmp_path, capsys, small_data):
    from accelnas.core.space import sample

    db, _ = small_data
    with Store(db) as store:
        store.record_failure(sample(1, 9)[0], "gpu/y", "latency", "k", {}, "engine build failed")
    code, err = _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "o"), "--target", "gpu/y")
    assert code == 1 and "no successful measurements in" in err and "gpu/y" in err


def test_export_of_an_empty_target_name_is_an_argument_error(tmp_path, capsys, small_data):
    db, _ = small_data
    code, err = _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "o"), "--target", "")
    assert code == 2 and "has no results for target" in err and "no successful measurements" not in err
    assert not (tmp_path / "o").exists()


def test_an_unreachable_ray_cluster_creates_no_store(tmp_path, capsys):
    import socket

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "c.sqlite"
    code, err = _main_exit(capsys, "collect", "--arch", "b0", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                           "--db", str(db))  # fmt: skip
    assert code == 1 and "cannot reach the Ray cluster" in err and not db.exists()


def test_ray_options_from_a_default_map_are_not_refused_without_ray(tmp_path):
    from click.testing import CliRunner

    # a default map (a config file) may hold the Ray settings; only the command line is checked
    args = ["train", "--arch", "b0", "--db", str(tmp_path / "t.sqlite"), "--data", str(tmp_path / "no-images")]
    from_map = CliRunner().invoke(cli, args, default_map={"train": {"gpus_per_task": 2.0}})
    assert "no-images" in str(from_map.exception) or "no-images" in from_map.output  # got as far as the data
    typed = CliRunner().invoke(cli, [*args, "--gpus-per-task", "2"])
    assert typed.exit_code == 2 and "--gpus-per-task applies to Ray tasks" in typed.output


def test_usage_errors_are_one_line_and_a_bare_group_shows_its_help():
    for args, fragment in ((["collect", "--bogus"], "No such option '--bogus'"), (["bogus"], "No such command"),
                           (["info"], "Missing argument 'ARCH'")):  # fmt: skip
        result = run_cli(*args)
        _assert_one_line_error(result, fragment, "--help')")
        assert result.returncode == 2
    bare = run_cli("surrogates")
    assert bare.returncode == 2 and "Usage: accelnas surrogates" in bare.stderr + bare.stdout


def test_settings_choose_among_the_settings_a_target_was_measured_under(tmp_path, capsys):
    from accelnas.core.records import Measurement
    from accelnas.core.space import sample

    db = tmp_path / "c.sqlite"
    with Store(db) as store:
        for target, size, key in (("cpu/x", 32, "aaaa1111"), ("cpu/x", 64, "bbbb2222"), ("gpu/y", 32, "cccc3333")):
            for i, a in enumerate(sample(12, size)):
                v = size / 10 + i
                for metric, unit, batch in (("latency", "ms", 1), ("throughput", "images/s", 8)):
                    m = Measurement(metric, unit, v, 0.1, v - 0.1, v + 0.1, [v], batch, size, True)
                    store.record_ok(a, target, key, {"input_size": size}, m)
    shown = run_cli("status", "--db", str(db))
    assert shown.returncode == 0 and "aaaa1111" in shown.stdout and "bbbb2222" in shown.stdout
    build = ["surrogates", "build", "--from-db", str(db), "--family", "additive", "--out", str(tmp_path / "b")]
    code, err = _main_exit(capsys, *build)
    assert code == 1 and "measured under 2 different settings" in err and "choose one with --settings KEY" in err
    assert (
        "aaaa1111: 32 px, batch 8, threads all, 12 rows" in err
        and "bbbb2222: 64 px, batch 8, threads all, 12 rows" in err
    )
    code, err = _main_exit(capsys, *build, "--settings", "bbbb")
    assert code == 0, err
    index = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    built = sorted((e["target"], e["metric"], e["rows"]) for e in index["surrogates"])
    # the key chooses among cpu/x's settings; gpu/y, measured under one, is built as it is
    assert built == [(t, m, 12) for t in ("cpu/x", "gpu/y") for m in ("latency", "throughput")]
    code, err = _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "d"), "--settings", "aaaa")
    assert code == 0, err
    import pandas as pd

    exported = pd.read_parquet(tmp_path / "d" / "cpu__x.parquet")
    assert set(exported["settings_key"]) == {"aaaa1111"} and set(exported["input_size"]) == {32}
    code, err = _main_exit(capsys, *build, "--settings", "eeee")
    assert code == 2
    assert "settings 'eeee' matches no settings key of the data (have: aaaa1111, bbbb2222, cccc3333)" in err
    code, err = _main_exit(capsys, *build, "--settings", "aaaa", "--settings", "bbbb")
    assert code == 2 and "two keys of cpu/x (aaaa1111, bbbb2222): use cpu/x=KEY" in err
    # two keys named for one target are refused, not settled by the last one
    code, err = _main_exit(capsys, *build, "--settings", "cpu/x=aaaa", "--settings", "cpu/x=bbbb")
    assert code == 2 and "--settings names two keys of cpu/x (aaaa1111, bbbb2222)" in err
    code, err = _main_exit(capsys, *build, "--settings", "cpu/x=aaaa", "--settings", "cpu/x=aaaa1111", "--out",
                           str(tmp_path / "b3"))  # fmt: skip
    assert code == 0, err  # the same key twice is one choice
    code, err = _main_exit(capsys, *build, "--settings", "cpu/x=bbbb", "--settings", "gpu/y=cccc", "--out",
                           str(tmp_path / "b2"))  # fmt: skip
    assert code == 0, err
    index = json.loads((tmp_path / "b2" / "benchmark.json").read_text())
    assert {(e["target"], e["rows"]) for e in index["surrogates"]} == {("cpu/x", 12), ("gpu/y", 12)}
    code, err = _main_exit(capsys, *build, "--settings", "tpu/z=aaaa")
    assert code == 2 and "no target tpu/z in the data" in err
    # fit takes only a key of the target it fits
    fit = ["fit", "--data", str(tmp_path / "d"), "--metric", "latency", "--out", str(tmp_path / "f")]
    code, err = _main_exit(capsys, *fit, "--target", "gpu/y", "--settings", "aaaa")
    assert code == 2 and "settings 'aaaa' matches no settings key of gpu/y (have: cccc3333)" in err
    code, err = _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "all"))
    assert code == 0, err
    fit_all = [*fit[:2], str(tmp_path / "all"), *fit[3:]]
    code, err = _main_exit(capsys, *fit_all, "--target", "cpu/x", "--settings", "aaaa", "--settings", "bbbb")
    assert code == 2 and "--settings names two keys of cpu/x (aaaa1111, bbbb2222)" in err
    assert not (tmp_path / "f").exists()


def test_a_device_name_selects_its_target_and_settings_for_unselected_targets_are_refused(tmp_path, capsys):
    """`collect --target cpu` takes the device alone; export, fit and build take it too, and a
    --settings TARGET=KEY for a target the command does not work on is an error, not a no-op."""
    from accelnas.core.records import Measurement
    from accelnas.core.space import sample

    db = tmp_path / "c.sqlite"
    with Store(db) as store:
        for target, key in (("cpu/x", "aaaa1111"), ("gpu/y", "cccc3333"), ("gpu/z", "dddd4444")):
            for i, a in enumerate(sample(12, 32)):
                v = 1.0 + i
                m = Measurement("latency", "ms", v, 0.1, v - 0.1, v + 0.1, [v], 1, 32, True)
                store.record_ok(a, target, key, {"input_size": 32}, m)
    code, err = _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "d"), "--target", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["cpu__x.csv", "cpu__x.parquet"]
    code, err = _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "e"), "--target", "gpu")
    assert code == 2 and "target gpu could be gpu/y, gpu/z: give one in full" in err
    fit = ["fit", "--data", str(tmp_path / "d"), "--metric", "latency", "--family", "additive"]
    code, err = _main_exit(capsys, *fit, "--target", "cpu", "--out", str(tmp_path / "f"))
    assert code == 0, err
    assert json.loads((tmp_path / "f" / "surrogate.json").read_text())["target"] == "cpu/x"
    build = ["surrogates", "build", "--from-db", str(db), "--family", "additive", "--target", "gpu"]
    code, err = _main_exit(capsys, *build, "--settings", "cpu/x=aaaa", "--out", str(tmp_path / "b"))
    assert code == 2 and "--settings cpu/x=aaaa: cpu/x is not a target this command works on (gpu/y, gpu/z)" in err
    code, err = _main_exit(capsys, *build, "--settings", "aaaa", "--out", str(tmp_path / "b"))  # cpu/x's key
    assert code == 2 and "--settings aaaa: a key of cpu/x, not of a target this command works on (gpu/y, gpu/z)" in err
    assert not (tmp_path / "b").exists()
    code, err = _main_exit(capsys, *build, "--settings", "gpu/y=cccc", "--out", str(tmp_path / "b"))
    assert code == 0, err
    index = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert sorted(e["target"] for e in index["surrogates"]) == ["gpu/y", "gpu/z"]
    all_data = ["fit", "--data", str(tmp_path / "all"), "--metric", "latency", "--out", str(tmp_path / "g")]
    assert _main_exit(capsys, "export", "--db", str(db), "--out", str(tmp_path / "all"))[0] == 0
    code, err = _main_exit(capsys, *all_data, "--target", "gpu/y", "--settings", "gpu/z=dddd")
    assert code == 2 and "gpu/z is not a target this command works on (gpu/y)" in err
