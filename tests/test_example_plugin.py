"""The example third-party plugin in examples/accelnas-example-plugin, installed like a real package.

The package is pip-installed into a temporary directory and accelnas runs in subprocesses with that
directory on ``PYTHONPATH``, so discovery goes through the real ``accelnas`` entry-point group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from accelnas.core.store import Store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "accelnas-example-plugin"
PLUGIN = "example_torchscript"
TARGET = "cpu/torchscript"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example package (installed once per module)."""
    for module in ("pip", "setuptools"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not available to install the example plugin")
    root = tmp_path_factory.mktemp("example-plugin")
    # Build from a copy so that setuptools' build/ and *.egg-info stay out of the source tree.
    source = shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
        "--quiet",
        "--target",
        str(target),
        str(source),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "accelnas_example_plugin.py").is_file()
    return target


def _env(site: Path, plugins: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env.pop("ACCELNAS_PLUGINS", None)
    if plugins is not None:
        env["ACCELNAS_PLUGINS"] = plugins
    return env


def _run(site: Path, *args: str, plugins: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m accelnas.core.cli ARGS`` with the example on the path; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "accelnas.core.cli", *args],
        capture_output=True,
        text=True,
        env=_env(site, plugins),
        cwd=site.parent,
        timeout=600,
    )
    command = " ".join(args)
    assert proc.returncode == 0, f"accelnas {command} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_plugins_lists_the_example(site: Path) -> None:
    infos = {i["name"]: i for i in json.loads(_run(site, "plugins", "--json").stdout)}
    assert PLUGIN in infos
    info = infos[PLUGIN]
    assert info["module"] == "accelnas_example_plugin"
    assert info["entry_point"] == "accelnas_example_plugin" and info["error"] is None
    assert info["distribution"] == "accelnas-example-plugin"
    assert info["version"] == "0.1.0"
    assert set(info["hooks"]) == {
        "register_targets",
        "export_model",
        "compile",
        "measure_throughput",
        "measure_latency",
    }
    assert PLUGIN in _run(site, "plugins").stdout


def test_targets_lists_cpu_torchscript(site: Path) -> None:
    found = {t["name"]: t for t in json.loads(_run(site, "targets", "--json").stdout)}
    assert TARGET in found
    assert "cpu/onnxruntime" in found  # the built-in plugin still loads beside it
    assert found[TARGET]["plugin"] == PLUGIN
    assert found[TARGET]["available"] is True
    assert found[TARGET]["default_batch_size"] == 16
    assert TARGET in _run(site, "targets").stdout


def test_accelnas_plugins_env_restricts_loading(site: Path) -> None:
    names = [t["name"] for t in json.loads(_run(site, "targets", "--json", plugins=PLUGIN).stdout)]
    assert names == [TARGET]
    assert "cpu/onnxruntime" not in _run(site, "targets", plugins=PLUGIN).stdout
    plugins = [i["name"] for i in json.loads(_run(site, "plugins", "--json", plugins=PLUGIN).stdout)]
    assert plugins == [PLUGIN]


def test_hooks_return_none_for_other_targets(site: Path) -> None:
    code = textwrap.dedent(
        """
        from pathlib import Path
        import accelnas_example_plugin as p
        from accelnas.core.records import CompiledModel, ExportedModel, MeasureSettings, Target
        from accelnas.core.space import EFFICIENTNET_B0
        t, s = Target("cpu", "onnxruntime"), MeasureSettings(input_size=32)
        assert p.export_model(t, EFFICIENTNET_B0, object(), s, Path(".")) is None
        assert p.compile(t, ExportedModel("onnx"), s, Path(".")) is None
        assert p.measure_throughput(t, CompiledModel(None), s) is None
        assert p.measure_latency(t, CompiledModel(None), s) is None
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(site), cwd=site.parent, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.slow
def test_collect_measures_through_the_example(site: Path, tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    proc = _run(
        site,
        "collect",
        "--target",
        TARGET,
        "--num",
        "2",
        "--input-size",
        "32",
        "--max-seconds",
        "0.5",
        "--warmup-seconds",
        "0.2",
        "--db",
        str(db),
    )
    assert "4 measured" in proc.stdout
    with Store(db, create=False) as store:
        rows = store.results()
        everything = store.results(status=None)
    assert len(rows) == 4
    assert len(everything) == 4  # no failures stored
    assert {r["target"] for r in rows} == {TARGET}
    assert {r["plugin"] for r in rows} == {PLUGIN}
    assert len({r["arch_id"] for r in rows}) == 2
    by_metric = {m: [r for r in rows if r["metric"] == m] for m in ("throughput", "latency")}
    assert [len(v) for v in by_metric.values()] == [2, 2]
    for r in by_metric["throughput"]:
        assert r["unit"] == "images/s" and r["batch_size"] == 16 and r["value"] > 0
    for r in by_metric["latency"]:
        assert r["unit"] == "ms" and r["batch_size"] == 1 and r["value"] > 0
        assert r["extra"]["p50"] > 0
    for r in rows:
        assert r["input_size"] == 32
        assert r["provenance"]["backend"] == "torchscript"
        assert r["provenance"]["plugin_version"] == "0.1.0"
        assert r["provenance"]["threads"] >= 1
        assert "cpu_model" in r["provenance"]
