"""What the core promises about plugins it did not write: installed distributions with odd entry points,
hook wrappers, clashing names, exotic exceptions, measurements at the wrong batch or of numpy numbers.

Third-party plugins are installed the way pip installs them (a module and a ``*.dist-info`` folder with
an ``accelnas`` entry point) into a temporary directory put on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import math
import re
import symtable
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Device, exact_measurement

from accelnas import hookimpl
from accelnas.core.campaign import run_campaign
from accelnas.core.cli import cli, main
from accelnas.core.errors import AccelnasError, PluginError, PluginLoadError, UnknownTargetError
from accelnas.core.executors import build_registry, checked_measurement, registry_spec
from accelnas.core.isolation import IsolatedExecutor
from accelnas.core.plugins import PluginRegistry, load_registry
from accelnas.core.records import Measurement, MeasureSettings, Target
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.core.store import Store

DOCS = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
SETTINGS = MeasureSettings(input_size=32, batch_size=4, precision=0.5, max_seconds=0.05, warmup_seconds=0.01)
HOOKS = ("register_targets", "export_model", "compile", "measure_throughput", "measure_latency")


@pytest.fixture()
def site(tmp_path, monkeypatch):
    """``install(dist, modules, entry_points)`` writes an installed distribution importable here and in children."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    written: list[str] = []

    def install(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1") -> None:
        for module, source in modules.items():
            (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            written.append(module)
        info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[accelnas]\n{lines}", encoding="utf-8")

    yield install
    for module in written:
        sys.modules.pop(module, None)


def _listed(registry: PluginRegistry) -> dict[str, list[str | None]]:
    """Plugin name -> the errors of its listings (None for a loaded one)."""
    out: dict[str, list[str | None]] = {}
    for info in registry.plugins():
        out.setdefault(info.name, []).append(info.error)
    return out


def _latency(value: float = 2.0, *, batch: int = 1, input_size: int = 32, **fields) -> Measurement:
    return exact_measurement("latency", value, batch=batch, input_size=input_size, **fields)


def _throughput(value: float = 100.0, *, batch: int = 4, input_size: int = 32) -> Measurement:
    return exact_measurement("throughput", value, batch=batch, input_size=input_size)


def _campaign(tmp_path: Path, device: Device, archs=None, settings: MeasureSettings = SETTINGS) -> list[dict]:
    registry = load_registry([])
    registry.register(device, "dev")
    with Store(tmp_path / "c.sqlite") as store:
        run_campaign(registry, registry.target(device.target.name), archs or [EFFICIENTNET_B0], settings, store)
        return store.results(status=None)


# -- 1. hook wrappers -----------------------------------------------------------------------------
WRAPPER_PLUGIN = """
    from accelnas import hookimpl

    @hookimpl(wrapper=True)
    def measure_latency(target, compiled, settings):
        m = yield
        return m
"""


def test_a_plugin_with_a_hook_wrapper_is_not_loaded_and_the_others_still_measure(site, caplog):
    site("wrap-plugin", {"wrap_mod": WRAPPER_PLUGIN}, {"wrap": "wrap_mod"})
    registry = load_registry(use_env=False)
    (error,) = _listed(registry)["wrap"]
    assert "hook wrappers" in error and "not supported" in error and "'measure_latency'" in error
    assert "\n" not in error and "plugin 'wrap' skipped" in caplog.text
    assert registry.pm.get_plugin("wrap") is None
    device = Device(Target("npu", "w", metrics=("latency",)), latency=lambda s: _latency())
    registry.register(device, "dev")
    target = registry.target("npu/w")
    assert registry.call_first("measure_latency", target=target, settings=SETTINGS)[1] == "dev"
    listed = CliRunner().invoke(cli, ["plugins"])
    assert listed.exit_code == 0
    assert re.search(r"NOT LOADED: plugin 'wrap' is invalid: hook wrappers .* not supported", listed.output)


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_register_refuses_hook_wrappers_on_any_hook(option):
    class Wrapping:
        @hookimpl(**{option: True})
        def register_targets(self, register):
            yield

    registry = PluginRegistry()
    with pytest.raises(PluginLoadError, match=r"hook wrappers .* not supported, found one for 'register_targets'"):
        registry.register(Wrapping(), "wrapping")
    assert registry.pm.get_plugin("wrapping") is None and registry.plugins() == []


# -- 2. other processes load what the driver loaded ------------------------------------------------
INSTANCE_PLUGIN = """
    from accelnas import hookimpl
    from accelnas.core.records import CompiledModel, ExportedModel, Measurement, Target

    class InstDev:
        def __init__(self, board):
            self.board = board

        @hookimpl
        def register_targets(self, register):
            register(Target("inst", self.board, metrics=("latency",)))

        @hookimpl
        def export_model(self, target):
            return ExportedModel(format="none") if target.device == "inst" else None

        @hookimpl
        def compile(self, target):
            return CompiledModel(handle=None) if target.device == "inst" else None

        @hookimpl
        def measure_latency(self, target, settings):
            if target.device != "inst":
                return None
            return Measurement("latency", "ms", 2.0, 0.0, 2.0, 2.0, [2.0], 1, settings.input_size, True,
                               provenance={"board": self.board})

    PLUGIN = InstDev("boardA")
"""


def test_a_registry_rebuilt_from_its_spec_holds_the_entry_points_object(site):
    site("instdev", {"instdev_mod": INSTANCE_PLUGIN}, {"instdev": "instdev_mod:PLUGIN"})
    registry = load_registry(["instdev"], use_env=False)
    spec = registry_spec(registry)
    assert spec == (("instdev", "instdev_mod:PLUGIN", "instdev", "0.1", "entry_point"),)
    sent = json.loads(json.dumps([list(entry) for entry in spec]))  # the way it travels to a child
    rebuilt = build_registry([tuple(entry) for entry in sent])
    assert rebuilt.pm.get_plugin("instdev").board == "boardA"
    assert list(rebuilt.targets()) == ["inst/boardA"]
    assert registry_spec(rebuilt) == spec  # a worker's registry describes itself the same way
    elsewhere = build_registry([("instdev", "instdev_mod:PLUGIN", "instdev", "9.9", "entry_point")])
    assert elsewhere.identity("instdev")["version"] == "0.1"  # the version installed where it runs


def test_an_isolated_campaign_runs_a_plugin_instance_made_with_arguments(site, tmp_path):
    site("instdev", {"instdev_mod": INSTANCE_PLUGIN}, {"instdev": "instdev_mod:PLUGIN"})
    registry = load_registry(["instdev"], use_env=False)
    target = registry.target("inst/boardA")
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, target, [EFFICIENTNET_B0], SETTINGS, store, executor=IsolatedExecutor(120.0))
        rows = store.results(status=None)
    assert report.failed == 0, report.errors
    assert [(r["status"], r["provenance"]["board"], r["plugin"]) for r in rows] == [("ok", "boardA", "instdev")]
    assert rows[0]["provenance"]["measured_by"]["executor"] == "isolated"
    # the measuring process names the plugin's distribution and version beside each value
    assert rows[0]["provenance"]["plugin"] == {"name": "instdev", "distribution": "instdev", "version": "0.1"}


def test_an_isolated_campaign_stops_when_its_child_cannot_load_the_plugin(site, tmp_path, monkeypatch):
    """A plugin that imports here but not in the --isolate child would fail every architecture alike."""
    picky = "\n    import os\n    if os.environ.get('PICKY_BROKEN'):\n        raise ImportError('picky needs its SDK')"
    site("picky", {"picky_mod": picky + INSTANCE_PLUGIN}, {"picky": "picky_mod:PLUGIN"})
    registry = load_registry(["picky"], use_env=False)
    target = registry.target("inst/boardA")
    monkeypatch.setenv("PICKY_BROKEN", "1")  # from now on the module no longer imports: in the child
    with Store(tmp_path / "c.sqlite") as store, pytest.raises(AccelnasError) as info:
        run_campaign(registry, target, sample(3, seed=2), SETTINGS, store, executor=IsolatedExecutor(120.0))
    message = str(info.value)
    assert message.startswith("the --isolate child process cannot measure: ") and "picky needs its SDK" in message
    with Store(tmp_path / "c.sqlite") as store:
        assert store.results(status=None) == []  # no failure stored for architectures never tried
        assert len(store.summary()) == 1 and store.summary()[0]["pending"] == 3


class NeedsBoard:
    def __init__(self, board: str) -> None:
        self.board = board

    @hookimpl
    def register_targets(self, register):
        register(Target("npu", self.board))


def test_a_directly_registered_instance_that_needs_arguments_is_refused_for_other_processes():
    registry = PluginRegistry()
    registry.register(NeedsBoard("b"), "needs")
    with pytest.raises(PluginLoadError, match="plugin 'needs' is an instance of NeedsBoard, which takes arguments"):
        registry_spec(registry)


# -- 3. a measurement must be of the campaign's input size and batch ---------------------------------
def test_measurements_at_another_input_size_or_batch_are_failed_rows_naming_the_plugin(tmp_path):
    device = Device(
        Target("npu", "odd", default_batch_size=8),
        latency=lambda s: _latency(batch=4, input_size=999),
        throughput=lambda s: _throughput(batch=8),  # the target's default, but the campaign asked for 4
    )
    rows = {r["metric"]: r for r in _campaign(tmp_path, device)}
    assert {r["status"] for r in rows.values()} == {"failed"} and {r["plugin"] for r in rows.values()} == {"dev"}
    latency, throughput = rows["latency"]["error"], rows["throughput"]["error"]
    assert "measurement at input size 999 from measure_latency, but the campaign measures at 32" in latency
    assert "throughput measurement at batch 8 from measure_throughput, but the campaign's batch is 4" in throughput


def test_latency_batch_is_one_unless_the_target_declares_another(tmp_path):
    settings = MeasureSettings(input_size=32)
    batch6 = _latency(batch=6)
    one = Target("npu", "one", plugin="dev")
    six = Target("npu", "six", default_batch_size=6, latency_batch_size=6, plugin="dev")
    with pytest.raises(PluginError, match=r"latency measurement at batch 6 .* but npu/one's latency batch is 1"):
        checked_measurement(batch6, "dev", "measure_latency", "latency", target=one, settings=settings)
    assert checked_measurement(batch6, "dev", "measure_latency", "latency", target=six, settings=settings) is batch6
    with pytest.raises(PluginError, match="latency batch is 6"):
        checked_measurement(_latency(), "dev", "measure_latency", "latency", target=six, settings=settings)
    # the throughput batch is the campaign's, resolved with the target's default
    tp = _throughput(batch=6)
    assert checked_measurement(tp, "dev", "measure_throughput", "throughput", target=six, settings=settings) is tp
    device = Device(six, latency=lambda s: _latency(batch=6), throughput=lambda s: _throughput(batch=6))
    rows = _campaign(tmp_path, device, settings=settings)
    assert sorted((r["metric"], r["status"], r["batch_size"]) for r in rows) == [
        ("latency", "ok", 6),
        ("throughput", "ok", 6),
    ]
    with pytest.raises(ValueError, match="latency_batch_size must be an int >= 1"):
        Target("npu", "zero", latency_batch_size=0)


# -- 4. entry-point names declared twice -------------------------------------------------------------
def test_a_second_distribution_declaring_a_taken_entry_point_name_is_listed_not_loaded(site, caplog):
    site("epclash", {"epclash_mod": "raise RuntimeError('must never be imported')\n"}, {"cpu_ort": "epclash_mod"})
    caplog.set_level(logging.WARNING)
    registry = load_registry(use_env=False)
    errors = _listed(registry)["cpu_ort"]
    assert None in errors  # the built-in one is loaded
    assert "entry-point name 'cpu_ort' is also declared by accelnas 0.1.0" in errors
    assert registry.targets()["cpu/onnxruntime"].plugin == "cpu_ort"
    assert "epclash" in caplog.text and "also declared by accelnas" in caplog.text
    clash = next(i for i in registry.plugins() if i.name == "cpu_ort" and i.error)
    assert (clash.distribution, clash.module) == ("epclash", "epclash_mod")
    listed = CliRunner().invoke(cli, ["plugins"])
    assert "NOT LOADED: entry-point name 'cpu_ort' is also declared by accelnas 0.1.0" in listed.output
    with pytest.raises(UnknownTargetError) as unknown:  # names the skipped copy, not the loaded plugin
        registry.target("npu/none")
    assert "plugin 'cpu_ort' of epclash 0.1 was skipped: entry-point name 'cpu_ort' is also" in str(unknown.value)


def test_between_third_parties_the_first_found_entry_point_is_loaded(site):
    site("first-dist", {"first_mod": "PLUGIN_ID = 'first'\n"}, {"twice": "first_mod"})
    site("second-dist", {"second_mod": "PLUGIN_ID = 'second'\n"}, {"twice": "second_mod"})
    registry = load_registry(["twice"], use_env=False)
    (loaded,) = [i for i in registry.plugins() if i.error is None]
    (refused,) = [i for i in registry.plugins() if i.error]
    assert refused.error == f"entry-point name 'twice' is also declared by {loaded.distribution} 0.1"
    assert {loaded.module, refused.module} == {"first_mod", "second_mod"}


CHATTY = """
print("Acme SDK 1.2 loaded")
from accelnas import hookimpl
from accelnas.core.records import Target

@hookimpl
def register_targets(register):
    print("probing boards ...")
    register(Target("chatty", "sim"))
"""


def test_what_a_plugin_prints_while_loading_goes_to_stderr_not_into_json_listings(site, monkeypatch):
    site("chatty-dist", {"chatty_mod": CHATTY}, {"chatty": "chatty_mod"})
    monkeypatch.setenv("ACCELNAS_PLUGINS", "chatty")
    stderr = ""
    for command, names in (("plugins", ["chatty"]), ("targets", ["chatty/sim"])):
        result = CliRunner().invoke(cli, [command, "--json"])
        assert result.exit_code == 0, result.output
        assert [row["name"] for row in json.loads(result.stdout)] == names
        assert "probing boards ..." in result.stderr
        stderr += result.stderr
    assert "Acme SDK 1.2 loaded" in stderr  # printed once, at the import


# -- 5. BaseExceptions escaping plugin code ----------------------------------------------------------
def _raise(exc: BaseException):
    def hook(settings):
        raise exc

    return hook


@pytest.mark.parametrize("exc", [asyncio.CancelledError("session cancelled"), GeneratorExit("session cancelled")])
def test_a_cancelled_error_in_a_hook_is_the_plugins_failure_and_the_campaign_goes_on(tmp_path, exc):
    device = Device(Target("npu", "cancel"), latency=_raise(exc), throughput=lambda s: _throughput())
    rows = {r["metric"]: r for r in _campaign(tmp_path, device)}
    assert rows["throughput"]["status"] == "ok"
    assert rows["latency"]["status"] == "failed" and rows["latency"]["plugin"] == "dev"
    name = type(exc).__name__
    assert rows["latency"]["error"] == f"plugin 'dev' raised in measure_latency: {name}: session cancelled"


def test_keyboard_interrupt_in_a_hook_still_stops_the_tool():
    device = Device(Target("npu", "ki"), latency=_raise(KeyboardInterrupt()))
    registry = PluginRegistry()
    registry.register(device, "dev")
    with pytest.raises(KeyboardInterrupt):
        registry.call_first("measure_latency", target=registry.target("npu/ki"), settings=SETTINGS)


class CancelsInRegister:
    @hookimpl
    def register_targets(self, register):
        raise asyncio.CancelledError()


def test_base_exceptions_while_loading_and_registering_skip_the_plugin(site):
    site("cancel-import", {"cancel_import": "import asyncio\nraise asyncio.CancelledError('at import')\n"},
         {"cancel_import": "cancel_import"})  # fmt: skip
    registry = load_registry(["cancel_import"], use_env=False)
    assert _listed(registry) == {"cancel_import": ["failed to import cancel_import: CancelledError: at import"]}
    registry.register(CancelsInRegister(), "cancels")
    registry.register(Device(Target("npu", "fine")), "fine")
    assert list(registry.targets()) == ["npu/fine"]
    assert _listed(registry)["cancels"] == ["failed in register_targets: CancelledError: CancelledError"]


@pytest.mark.parametrize("exc", [SystemExit(4), GeneratorExit(4)])
def test_sys_exit_in_check_values_is_the_plugins_error(exc):
    def check(settings):
        raise exc

    target = Target("npu", "x", check_values=check, plugin="dev")
    with pytest.raises(PluginError, match=f"plugin 'dev' raised in check_values of npu/x: {type(exc).__name__}: 4"):
        target.check_options(SETTINGS)


# -- 6. a target name registered by two plugins -------------------------------------------------------
class Redeclares:
    def __init__(self, description: str) -> None:
        self.description = description

    @hookimpl
    def register_targets(self, register):
        register(Target("npu", "shared", description=self.description))


class RedeclaresFirst(Redeclares):
    @hookimpl(tryfirst=True)
    def register_targets(self, register):
        register(Target("npu", "shared", description=self.description))


class DeclaresLast(Redeclares):
    @hookimpl(trylast=True)
    def register_targets(self, register):
        register(Target("npu", "shared", description=self.description))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_replacing_another_plugins_target_without_tryfirst_warns_naming_both(caplog):
    registry = PluginRegistry()
    registry.register(Redeclares("a"), "alpha")
    registry.register(Redeclares("b"), "beta")
    winner = registry.targets()["npu/shared"]
    (warning,) = _warnings(caplog)
    assert f"target npu/shared of plugin {winner.plugin!r}" in warning
    assert {"'alpha'", "'beta'"} <= set(re.findall(r"'\w+'", warning)) and "tryfirst=True" in warning


@pytest.mark.parametrize("first, second", [(Redeclares, RedeclaresFirst), (DeclaresLast, Redeclares)])
def test_a_deliberate_replacement_does_not_warn(first, second, caplog):
    registry = PluginRegistry()
    registry.register(second("override"), "override")
    registry.register(first("original"), "original")
    target = registry.targets()["npu/shared"]
    assert (target.plugin, target.description) == ("override", "override")
    assert _warnings(caplog) == []


# -- 7. a metric nobody measures -------------------------------------------------------------------------
def test_a_metric_no_plugin_implements_fails_naming_the_targets_plugin(tmp_path):
    device = Device(Target("npu", "half"), throughput=lambda s: _throughput())
    rows = {r["metric"]: r for r in _campaign(tmp_path, device)}
    assert rows["throughput"]["status"] == "ok"
    latency = rows["latency"]
    assert latency["status"] == "failed" and latency["plugin"] == "dev"
    assert latency["error"] == (
        "no plugin answered measure_latency for target npu/half (declared by plugin 'dev'): 'dev' returned None"
    )


# -- 8. numbers of other types, and numbers no column can hold --------------------------------------
def test_numpy_scalars_are_accepted_and_stored_as_python_numbers(tmp_path):
    def latency(settings):
        value = np.float32(2.5)
        return _latency(value, batch=np.int64(1), input_size=np.int32(settings.input_size), std=np.float64(0.0),
                        samples=[np.float32(2.5), 2], precision_reached=np.bool_(True),
                        extra={"p50": np.float64(2.5), "runs": [{"n": np.int64(3)}]})  # fmt: skip

    m = latency(SETTINGS).validate()
    numbers = (m.mean, m.std, m.ci_low, m.ci_high, m.batch_size, m.input_size)
    assert [type(v) for v in numbers] == [float, float, float, float, int, int]
    assert [type(s) for s in m.samples] == [float, float] and m.precision_reached is True
    rows = _campaign(tmp_path, Device(Target("npu", "np", metrics=("latency",)), latency=latency))
    assert [(r["status"], r["value"], r["batch_size"], r["samples"]) for r in rows] == [("ok", 2.5, 1, [2.5, 2.0])]
    assert rows[0]["extra"] == {"p50": 2.5, "runs": [{"n": 3}]}  # numbers, not their str()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"mean": 10**400, "ci_high": 10**400}, "mean must be a finite number, got 1000"),
        ({"samples": [10**400]}, r"samples\[0\] must be a finite number"),
        ({"batch_size": 2**70}, "batch_size must be a positive int, got 1180591620717411303424"),
        ({"input_size": np.float64(32.0)}, "input_size must be a positive int"),
        ({"mean": True}, "mean must be a finite number, got True"),
        ({"mean": np.float32("nan")}, "mean must be a finite number"),
        ({"precision_reached": "False"}, "precision_reached must be a bool, got 'False'"),
        ({"samples": [1e6, 1e6]}, r"mean 2 is outside its samples' range \[1e\+06, 1e\+06\]"),
    ],
)
def test_numbers_that_cannot_be_stored_make_a_malformed_measurement(fields, message):
    values = {"batch": fields.pop("batch_size", 1), "input_size": fields.pop("input_size", 32)}
    m = _latency(**values, **fields)
    expected = f"plugin 'dev' returned a malformed measurement from measure_latency: {message}"
    with pytest.raises(PluginError, match=expected):
        checked_measurement(m, "dev", "measure_latency", "latency")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"options": "clock_mhz"}, "options must be a tuple of names, not a string"),
        ({"requires": "onnxruntime"}, "requires must be a tuple of names, not a string"),
        ({"metrics": "latency"}, "metrics must be a tuple of names, not a string"),
        ({"metrics": ()}, r"metrics must name at least one of \('throughput', 'latency'\)"),
        ({"available": "no"}, "available must be True or False"),
        ({"needs_model": 0}, "needs_model must be True or False"),
    ],
)
def test_target_fields_of_the_wrong_kind_are_refused(fields, message):
    with pytest.raises(ValueError, match=f"^target npu/sdk: {message}$"):
        Target("npu", "sdk", **fields)
    assert Target("npu", "sdk", options=["clock_mhz"]).options == ("clock_mhz",)
    assert Target("npu", "sdk", metrics=["latency", "latency"]).metrics == ("latency",)


def test_an_overflowing_measurement_is_a_failed_row_and_a_huge_valid_one_is_stored(tmp_path):
    archs = sample(2, seed=1)

    def latency(settings):
        latency.calls += 1
        if latency.calls == 1:
            return _latency(10**400, ci_high=10**400)
        return _latency(2**70, ci_low=2**70, ci_high=2**71)

    latency.calls = 0
    rows = _campaign(tmp_path, Device(Target("npu", "big", metrics=("latency",)), latency=latency), archs=archs)
    assert sorted(r["status"] for r in rows) == ["failed", "ok"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["plugin"] == "dev" and "mean must be a finite number" in failed["error"]
    assert next(r["value"] for r in rows if r["status"] == "ok") == float(2**70)


@pytest.mark.parametrize("name", ["precision", "max_seconds", "warmup_seconds"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_measure_settings_refuse_nan_and_infinite_budgets(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number, got (nan|inf)$"):
        MeasureSettings(**{name: value})


# -- 9. the walk-through's code --------------------------------------------------------------------------
def test_the_walkthrough_snippets_concatenated_import_and_make_a_valid_plugin():
    text = DOCS.read_text(encoding="utf-8")
    walkthrough = text[text.index("## Walk-through") :]
    code = "\n\n".join(re.findall(r"```python\n(.*?)```", walkthrough, re.S))
    module = types.ModuleType("walkthrough")
    exec(compile(code, "writing-a-plugin.md", "exec"), module.__dict__)
    undefined: set[str] = set()

    def visit(table: symtable.SymbolTable) -> None:
        for child in table.get_children():
            if child.get_type() == "function":
                for symbol in child.get_symbols():
                    name = symbol.get_name()
                    if symbol.is_global() and name not in module.__dict__ and not hasattr(builtins, name):
                        undefined.add(f"{name} in {child.get_name()}")
            visit(child)

    visit(symtable.symtable(code, "writing-a-plugin.md", "exec"))
    assert not undefined, f"names used but never imported or defined: {sorted(undefined)}"
    registry = PluginRegistry()
    registry.register(module, "walkthrough")  # its hook arguments match the specs
    registry.check_pending()
    assert sorted(next(i for i in registry.plugins()).hooks) == sorted(HOOKS)


def test_the_docs_do_not_claim_plugins_lists_only_two():
    assert "# cpu_ort and example_torchscript" not in DOCS.read_text(encoding="utf-8")


# -- 10. pluggy's refusal as one line ------------------------------------------------------------------
class WorkDir:
    @hookimpl
    def compile(self, target, exported, settings, work_dir):
        return None


def test_a_hook_argument_not_in_its_spec_is_a_one_line_error():
    registry = PluginRegistry()
    with pytest.raises(PluginLoadError) as raised:
        registry.register(WorkDir(), "workdir")
    assert str(raised.value) == (
        "plugin 'workdir' is invalid: argument 'work_dir' of hook 'compile' is not in its spec "
        "(its arguments: target, exported, settings, workdir)"
    )


# -- 11. a target of a plugin ACCELNAS_PLUGINS left out -------------------------------------------------
def test_an_unknown_target_names_the_plugins_accelnas_plugins_left_out(site, monkeypatch, capsys, tmp_path):
    site("mydev", {"mydev_mod": "PLUGIN_ID = 'mydev'\n"}, {"mydev": "mydev_mod"})
    monkeypatch.setenv("ACCELNAS_PLUGINS", "cpu_ort")
    with pytest.raises(UnknownTargetError) as raised:
        load_registry().target("mydev/sleep")
    message = str(raised.value)
    assert message.startswith("unknown target 'mydev/sleep' (known targets: cpu/onnxruntime, cpu/torch")
    left_out = re.search(r"ACCELNAS_PLUGINS=cpu_ort left out the installed plugins ([\w, ]+)\)$", message)
    assert left_out and {"mydev", "cuda_trt", "fpga_vitis", "tpu_xla"} <= set(left_out.group(1).split(", "))
    with pytest.raises(UnknownTargetError) as unfiltered:
        load_registry(use_env=False).target("x/y")
    assert "left out" not in str(unfiltered.value)
    with pytest.raises(SystemExit) as exited:
        main(["collect", "--target", "mydev/sleep", "--num", "1", "--db", str(tmp_path / "c.sqlite")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ACCELNAS_PLUGINS=cpu_ort left out the installed plugins" in err
