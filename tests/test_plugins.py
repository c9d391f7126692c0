import inspect
from pathlib import Path

import pytest

from accelnas import hookimpl
from accelnas.core import hookspecs
from accelnas.core.errors import PluginError, PluginLoadError, TargetUnavailableError, UnknownTargetError
from accelnas.core.plugins import PluginRegistry, load_registry
from accelnas.core.records import Target

SPEC_NAMES = ["register_targets", "export_model", "compile", "measure_throughput", "measure_latency"]


def test_every_hookspec_is_documented():
    specs = [
        f
        for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if getattr(f, "accelnas_spec", None) is not None
    ]
    assert sorted(f.__name__ for f in specs) == sorted(SPEC_NAMES)
    for f in specs:
        doc = inspect.getdoc(f)
        assert doc and len(doc) > 40, f"hookspec {f.__name__} needs a docstring"
        # docstring-only specs: the body is the docstring alone
        assert inspect.getsource(f).rstrip().endswith('"""'), f"hookspec {f.__name__} has a body"
    docs = (Path(__file__).parents[1] / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
    for name in SPEC_NAMES:
        assert name in docs, f"docs/writing-a-plugin.md does not document {name}"


def test_builtin_cpu_plugin_loads_through_its_entry_point():
    registry = load_registry(use_env=False)
    names = {p.name for p in registry.plugins()}
    assert "cpu_ort" in names
    info = next(p for p in registry.plugins() if p.name == "cpu_ort")
    assert info.distribution == "accelnas" and info.version
    assert set(SPEC_NAMES) <= set(info.hooks)
    targets = registry.targets()
    assert {"cpu/onnxruntime", "cpu/torch"} <= set(targets)
    assert targets["cpu/onnxruntime"].plugin == "cpu_ort" and targets["cpu/onnxruntime"].available
    assert registry.target("cpu").name == "cpu/onnxruntime"


def test_env_var_restricts_loading(monkeypatch):
    monkeypatch.setenv("ACCELNAS_PLUGINS", "")
    assert load_registry().targets() == {}
    monkeypatch.setenv("ACCELNAS_PLUGINS", "cpu_ort")
    assert "cpu/onnxruntime" in load_registry().targets()
    monkeypatch.setenv("ACCELNAS_PLUGINS", "cpu_ort,no_such_plugin")
    with pytest.raises(PluginLoadError, match="no_such_plugin"):
        load_registry()


def test_targets_command_with_no_plugins_loaded(monkeypatch):
    from click.testing import CliRunner

    from accelnas.core.cli import cli

    monkeypatch.setenv("ACCELNAS_PLUGINS", "")
    result = CliRunner().invoke(cli, ["targets"])
    assert result.exit_code == 0 and result.output.strip() == "no targets registered"


class _Typo:
    @hookimpl
    def measure_latncy(self, target):  # misspelt hook name
        return None


def test_check_pending_catches_misspelt_hooks():
    registry = PluginRegistry()
    registry.register(_Typo(), "typo")
    with pytest.raises(PluginLoadError, match="typo"):
        registry.check_pending()


class _Devices:
    @hookimpl
    def register_targets(self, register):
        register(Target("npu", "sdk", available=False, reason="the vendor SDK is not installed"))
        register(Target("npu", "sim"))

    @hookimpl
    def export_model(self, target, architecture):
        if target.backend == "sim":
            raise RuntimeError("simulator exploded\nsecond line")
        return None


def test_unavailable_and_unknown_targets():
    registry = PluginRegistry()
    registry.register(_Devices(), "devices")
    assert registry.targets()["npu/sdk"].reason == "the vendor SDK is not installed"
    with pytest.raises(TargetUnavailableError, match="vendor SDK"):
        registry.target("npu/sdk")
    assert registry.target("npu/sdk", require_available=False).plugin == "devices"
    assert registry.target("npu").name == "npu/sim"  # the available backend
    with pytest.raises(UnknownTargetError, match="gpu/trt"):
        registry.target("gpu/trt")


def test_call_first_names_the_plugin_that_raised():
    registry = PluginRegistry()
    registry.register(_Devices(), "devices")
    target = registry.target("npu/sim")
    with pytest.raises(
        PluginError, match=r"plugin 'devices' raised in export_model: RuntimeError: simulator exploded$"
    ):
        registry.call_first("export_model", target=target, architecture=None)
    with pytest.raises(PluginError, match="no plugin implements compile"):
        registry.call_first("compile", target=target)


class _Override:
    """Serves cpu/onnxruntime ahead of the built-in plugin (tryfirst), the way a backend is swapped."""

    @hookimpl(tryfirst=True)
    def export_model(self, target):
        return "mine" if target.name == "cpu/onnxruntime" else None


def test_tryfirst_plugin_replaces_a_backend():
    registry = load_registry(["cpu_ort"])
    registry.register(_Override(), "override")
    target = registry.target("cpu/onnxruntime")
    assert registry.call_first("export_model", target=target) == ("mine", "override")


def test_register_rejects_duplicates_and_non_targets():
    registry = PluginRegistry()
    registry.register(_Devices(), "devices")
    with pytest.raises(PluginLoadError, match="already registered"):
        registry.register(_Typo(), "devices")

    class Bad:
        @hookimpl
        def register_targets(self, register):
            register({"device": "x"})

    registry.register(Bad(), "bad")
    with pytest.raises(PluginError, match="plugin 'bad' registered a non-Target"):
        registry.targets()
