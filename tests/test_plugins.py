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
    monkeypatch.delenv("ACCELNAS_PLUGINS")
    with pytest.raises(TypeError, match="not the string 'cpu_ort'"):  # would be read as c, p, u, ...
        load_registry(only="cpu_ort")
    with pytest.raises(PluginLoadError, match="unknown plugin 'nope' in the plugins asked for"):
        load_registry(only=["nope"])
    assert "cpu/onnxruntime" in load_registry(only=["cpu_ort"]).targets()


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


def test_check_pending_skips_a_plugin_with_a_misspelt_hook(caplog):
    registry = PluginRegistry()
    registry.register(_Devices(), "devices")
    registry.register(_Typo(), "typo")
    registry.check_pending()
    assert registry.pm.get_plugin("typo") is None and registry.pm.get_plugin("devices") is not None
    listed = {info.name: info for info in registry.plugins()}
    assert "unknown hook" in listed["typo"].error and "measure_latncy" in listed["typo"].error
    assert listed["devices"].error is None and "npu/sim" in registry.targets()
    assert "plugin 'typo' skipped" in caplog.text


class _OptionalTypo:
    @hookimpl(optionalhook=True)
    def measure_latncy(self, target):  # misspelt, and marked optional, which check_pending() lets through
        return None


def test_a_misspelt_hook_marked_optional_is_refused_too():
    registry = PluginRegistry()
    with pytest.raises(PluginLoadError, match=r"^plugin 'typo' is invalid: unknown hook 'measure_latncy'"):
        registry.register(_OptionalTypo(), "typo")
    assert registry.pm.get_plugin("typo") is None


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


class _Greedy:
    """Answers for every target: it forgot to return None for the targets it does not serve."""

    @hookimpl
    def export_model(self, target):
        return "greedy"

    @hookimpl
    def compile(self, target):
        return "greedy"


class _Owner:
    @hookimpl
    def register_targets(self, register):
        register(Target("acc", "own"))

    @hookimpl
    def export_model(self, target):
        return "own" if target.name == "acc/own" else None


def test_a_plugin_answering_every_target_cannot_take_over_another_plugins_target(caplog):
    registry = PluginRegistry()
    registry.register(_Owner(), "owner")
    registry.register(_Devices(), "devices")
    registry.register(_Greedy(), "greedy")  # registered last: in pluggy's order it would be asked first
    with caplog.at_level("WARNING", logger="accelnas.core.plugins"):
        assert registry.call_first("export_model", target=registry.target("acc/own")) == ("own", "owner")
        assert "greedy" not in caplog.text
        sim = registry.target("npu/sim")  # its plugin implements no compile: the greedy one answers, warned once
        assert registry.call_first("compile", target=sim) == ("greedy", "greedy")
        registry.call_first("compile", target=sim)
    warned = [r.getMessage() for r in caplog.records if "without tryfirst" in r.getMessage()]
    assert warned == ["plugin 'greedy' answered compile for target npu/sim of plugin 'devices' without "
                      "tryfirst=True; if it means to replace that target's implementation, mark its hooks "
                      "tryfirst, else return None for targets it does not serve"]  # fmt: skip


def test_a_plugin_without_hook_implementations_is_loaded_with_a_warning(caplog):
    class Unmarked:
        def register_targets(self, register):  # not marked @hookimpl: pluggy never calls it
            register(Target("npu", "unmarked"))

    registry = PluginRegistry()
    with caplog.at_level("WARNING", logger="accelnas.core.plugins"):
        registry.register(Unmarked(), "unmarked")
        registry.register(_Devices(), "devices")
    assert caplog.messages == [
        f"plugin 'unmarked' ({__name__}) implements no hook: are its functions marked @accelnas.hookimpl?"
    ]
    assert [i.hooks for i in registry.plugins()] == [["export_model", "register_targets"], []]


def test_a_plugin_class_is_listed_under_its_module():
    """An entry point may name a class (``pkg.mod:Plugin``) with static hooks: its module is pkg.mod."""
    import types

    class AsClass:
        @staticmethod
        @hookimpl
        def register_targets(register):
            register(Target("npu", "as-class"))

    registry = PluginRegistry()
    registry.register(AsClass, "as-class")
    registry.register(_Devices(), "devices")
    registry.register(types.ModuleType("pkg.mod"), "as-module")
    modules = {i.name: i.module for i in registry.plugins()}
    assert modules == {"as-class": __name__, "devices": __name__, "as-module": "pkg.mod"}
    assert "npu/as-class" in registry.targets()


def test_plugins_command_says_when_a_plugin_implements_no_hook(monkeypatch):
    from click.testing import CliRunner

    from accelnas.core import cli

    class Unmarked:
        def register_targets(self, register):
            register(Target("npu", "unmarked"))

    registry = PluginRegistry()
    registry.register(Unmarked(), "unmarked")
    registry.register(_Devices(), "devices")
    monkeypatch.setattr(cli, "_registry", lambda: registry)
    lines = CliRunner().invoke(cli.cli, ["plugins"]).output.splitlines()
    hooks = [line.strip() for line in lines if line.strip().startswith("hooks:")]
    assert hooks == [
        "hooks: export_model, register_targets",
        "hooks: none (are its functions marked @accelnas.hookimpl?)",
    ]


class _Fallback:
    """Declares npu/base as a fallback (trylast) and implements what a replacement may reuse."""

    @hookimpl(trylast=True)
    def register_targets(self, register):
        register(Target("npu", "base"))

    @hookimpl
    def compile(self, target):
        return "fallback" if target.name == "npu/base" else None


class _Replacement:
    @hookimpl
    def register_targets(self, register):
        register(Target("npu", "base", default_batch_size=2))


def test_a_replaced_fallback_answering_its_own_target_is_not_warned_about(caplog):
    registry = PluginRegistry()
    registry.register(_Fallback(), "fallback")
    registry.register(_Replacement(), "replacement")
    target = registry.target("npu/base")
    assert target.plugin == "replacement"
    with caplog.at_level("WARNING", logger="accelnas.core.plugins"):
        assert registry.call_first("compile", target=target) == ("fallback", "fallback")
    assert "without tryfirst" not in caplog.text


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
    assert set(registry.targets()) == {"npu/sdk", "npu/sim"}  # the bad plugin is skipped, not fatal
    assert "registered a non-Target" in {i.name: i for i in registry.plugins()}["bad"].error


def test_a_target_registered_twice_by_one_plugin_keeps_the_last_with_a_warning(caplog):
    class Twice:
        @hookimpl
        def register_targets(self, register):
            register(Target("npu", "sim", default_batch_size=4))
            register(Target("npu", "sim", default_batch_size=8))

    registry = PluginRegistry()
    registry.register(Twice(), "twice")
    with caplog.at_level("WARNING", logger="accelnas.core.plugins"):
        assert registry.target("npu/sim").default_batch_size == 8
    assert caplog.messages == ["plugin 'twice' registers target npu/sim twice; the last declaration is kept"]


class _Exploding:
    """Registers one target, then fails: none of its targets may survive."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    @hookimpl
    def register_targets(self, register):
        register(Target("npu", "half"))
        raise self.failure


@pytest.mark.parametrize("failure", [RuntimeError("driver missing\nsecond line"), SystemExit(3)])
def test_plugin_failing_in_register_targets_is_skipped_and_named(failure, caplog):
    registry = PluginRegistry()
    registry.register(_Devices(), "devices")
    registry.register(_Exploding(failure), "exploding")
    assert set(registry.targets()) == {"npu/sdk", "npu/sim"}
    error = {i.name: i for i in registry.plugins()}["exploding"].error
    assert error.startswith("failed in register_targets: ") and "\n" not in error
    assert "plugin 'exploding' skipped" in caplog.text
    with pytest.raises(UnknownTargetError, match="plugin 'exploding' was skipped: failed in register_targets"):
        registry.target("npu/half")


class _Quitter:
    @hookimpl
    def register_targets(self, register):
        register(Target("npu", "quit"))

    @hookimpl
    def export_model(self, target):
        raise SystemExit(5)


def test_sys_exit_in_a_hook_is_the_plugins_error():
    registry = PluginRegistry()
    registry.register(_Quitter(), "quitter")
    with pytest.raises(PluginError, match="plugin 'quitter' raised in export_model: SystemExit: 5"):
        registry.call_first("export_model", target=registry.target("npu/quit"))


def test_plugins_and_targets_commands_survive_a_failing_plugin(monkeypatch):
    from click.testing import CliRunner

    import accelnas.core.cli as cli_module

    def registry():
        r = load_registry(["cpu_ort"])
        r.register(_Exploding(RuntimeError("no driver")), "exploding")
        return r

    monkeypatch.setattr(cli_module, "_registry", registry)
    listed = CliRunner().invoke(cli_module.cli, ["plugins"])
    assert listed.exit_code == 0, listed.output
    assert "NOT LOADED: failed in register_targets: RuntimeError: no driver" in listed.output
    assert "cpu_ort" in listed.output
    targets = CliRunner().invoke(cli_module.cli, ["targets"])
    assert targets.exit_code == 0 and "cpu/onnxruntime" in targets.output and "npu/half" not in targets.output


class _ExtraArgument:
    @hookimpl
    def measure_latency(self, target, compiled, settings, verbose):  # "verbose" is not in the spec
        return None


def test_a_plugin_pluggy_refuses_to_register_is_skipped(monkeypatch, caplog):
    import accelnas.core.plugins as plugins_module

    class EntryPoint:
        name, value, dist = "extra", "extra_plugin:Plugin", None

        def load(self):
            return _ExtraArgument()

    monkeypatch.setattr(plugins_module.metadata, "entry_points", lambda group: [EntryPoint()])
    registry = PluginRegistry()
    registry.load_entry_points()
    registry.check_pending()
    (info,) = registry.plugins()
    assert info.name == "extra" and registry.pm.get_plugin("extra") is None
    assert info.error == (
        "plugin 'extra' is invalid: argument 'verbose' of hook 'measure_latency' is not in its spec "
        "(its arguments: target, compiled, settings)"
    )
    assert "plugin 'extra' skipped" in caplog.text and registry.targets() == {}
