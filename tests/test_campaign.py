"""Campaigns with real ONNX Runtime / PyTorch measurements at a small input size, and faulty plugins."""

import dataclasses
import io
import logging
import math
import os

import pytest
from conftest import Device, exact_measurement

from accelnas import hookimpl
from accelnas.core.campaign import run_campaign
from accelnas.core.errors import AccelnasError, PluginError, TargetUnavailableError, UnknownOptionError
from accelnas.core.plugins import load_registry
from accelnas.core.progress import ProgressPrinter
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.core.store import Store

FAST = MeasureSettings(input_size=32, batch_size=4, precision=0.05, max_seconds=0.5, warmup_seconds=0.2, threads=1)


@pytest.fixture(scope="module")
def registry():
    return load_registry(["cpu_ort"])


def test_real_onnxruntime_campaign_stores_everything_and_resumes(registry, tmp_path, caplog):
    target = registry.target("cpu/onnxruntime")
    archs = [EFFICIENTNET_B0, *sample(2, seed=11)]
    events = []
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, target, archs, FAST, store, progress=events.append)
        assert (report.measured, report.failed, report.already_done) == (6, 0, 0)
        rows = store.results(target="cpu/onnxruntime")
        assert len(rows) == 6
        for row in rows:
            assert row["status"] == "ok" and row["value"] > 0 and math.isfinite(row["value"])
            assert row["ci_low"] <= row["value"] <= row["ci_high"]
            assert row["input_size"] == 32 and row["plugin"] == "cpu_ort"
            prov = row["provenance"]
            assert prov["onnxruntime"] and prov["cpu_model"] and prov["threads"] == 1
            assert "flush-to-zero" in prov["denormals"] and "batchnorm-calibrated" in prov["denormals"]
        latency = {r["arch_id"]: r for r in rows if r["metric"] == "latency"}
        assert all(r["batch_size"] == 1 and r["extra"]["p50"] > 0 for r in latency.values())
        assert {r["batch_size"] for r in rows if r["metric"] == "throughput"} == {4}
        assert [e.status for e in events].count("ok") == 6

        again = run_campaign(registry, target, archs, FAST, store)
        assert (again.measured, again.already_done) == (0, 6)
        assert len(store.results()) == 6
        widths = {(r["arch_id"], r["metric"]): r["extra"]["relative_ci"] for r in rows}
        for precision in (FAST.precision, 0.01, 0.001):
            wider = sum(w > precision for w in widths.values())
            assert store.looser_than("cpu/onnxruntime", report.settings_key, precision) == wider
        assert store.looser_than("cpu/onnxruntime", report.settings_key, 0.001, {(archs[0].id, "latency")}) == 1
        assert store.looser_than("cpu/onnxruntime", "other key", 0.001) == 0
        with caplog.at_level(logging.WARNING, logger="accelnas.core.campaign"):
            run_campaign(registry, target, archs, dataclasses.replace(FAST, precision=0.001), store)
        assert "6 stored cpu/onnxruntime measurement(s) of this run are less precise than ±0.1%" in caplog.text
        # other settings are another campaign
        other = MeasureSettings(
            input_size=48, batch_size=4, precision=0.05, max_seconds=0.3, warmup_seconds=0.1, threads=1
        )
        run_campaign(registry, target, archs[:1], other, store, metrics=["latency"])
        assert len(store.results()) == 7


def test_real_torch_backend(registry, tmp_path):
    target = registry.target("cpu/torch")
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, target, sample(1, seed=5), FAST, store)
        assert report.measured == 2 and report.failed == 0
        prov = store.results()[0]["provenance"]
        assert prov["backend"] == "torch" and prov["memory_format"] == "channels_last"


class Faulty:
    """A device plugin whose measurements go wrong in different ways."""

    @hookimpl
    def register_targets(self, register):
        register(Target("fake", "faulty", default_batch_size=2))

    @hookimpl
    def export_model(self, target, architecture):
        if target.name != "fake/faulty":
            return None
        if architecture.stages[0].e == 1:
            raise MemoryError("out of memory while exporting")
        return ExportedModel(format="none")

    @hookimpl
    def compile(self, target, exported):
        return CompiledModel(handle=None) if target.name == "fake/faulty" else None

    @hookimpl
    def measure_throughput(self, target, settings):
        if target.name != "fake/faulty":
            return None
        return Measurement(
            metric="throughput",
            unit="images/s",
            mean=math.nan,
            std=0.0,
            ci_low=0.0,
            ci_high=0.0,
            samples=[1.0],
            batch_size=2,
            input_size=settings.input_size,
            precision_reached=True,
        )

    @hookimpl
    def measure_latency(self, target, settings):
        if target.name != "fake/faulty":
            return None
        return Measurement(
            metric="latency",
            unit="ms",
            mean=2.0,
            std=0.1,
            ci_low=1.9,
            ci_high=2.1,
            samples=[2.0, 2.0],
            batch_size=1,
            input_size=settings.input_size,
            precision_reached=True,
        )


def test_plugin_failures_are_recorded_and_the_campaign_goes_on(tmp_path):
    registry = load_registry([])
    registry.register(Faulty(), "faulty")
    target = registry.target("fake/faulty")
    archs = sample(12, seed=3)
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, target, archs, FAST, store)
        exporting_fails = [a for a in archs if a.stages[0].e == 1]
        assert 0 < len(exporting_fails) < len(archs)
        ok = store.results(status="ok")
        failed = store.results(status="failed")
        assert {r["metric"] for r in ok} == {"latency"}
        assert len(ok) == len(archs) - len(exporting_fails)
        assert len(failed) == 2 * len(exporting_fails) + len(ok)
        assert report.failed == len(failed) and report.measured == len(ok)
        for r in failed:
            assert "faulty" in r["error"] and r["plugin"] == "faulty"
            where = r["provenance"]["measured_by"]  # which host failed, on a cluster
            assert where["executor"] == "local" and where["host"] and where["pid"] == os.getpid()
            if r["metric"] == "throughput" and r["arch_id"] not in {a.id for a in exporting_fails}:
                assert "malformed measurement" in r["error"] and "mean" in r["error"]
            else:
                assert "MemoryError: out of memory while exporting" in r["error"]
        # a second run retries the failures and keeps the successes
        again = run_campaign(registry, target, archs, FAST, store)
        assert again.already_done == len(ok) and again.measured == 0
        attempts = {r["attempts"] for r in store.results(status="failed")}
        assert attempts == {2}
        events = []
        third = run_campaign(registry, target, archs, FAST, store, retry_failed=False, progress=events.append)
        # the failures left alone are counted as such, not as stored results
        assert third.failed == 0 and third.measured == 0
        assert third.already_done == len(ok) and third.failures_kept == len(failed)
        assert {e.status for e in events} == {"kept-failure"}  # every architecture has a failure left
        printed = io.StringIO()
        printer = ProgressPrinter(printed)
        for event in events:
            printer(event)
        assert printed.getvalue().count("stored failure, not retried") == len(archs)
        assert "already stored" not in printed.getvalue()


def test_progress_eta_counts_only_the_architectures_left_to_measure(monkeypatch):
    """Stored architectures later in the list take no time: they are not in the ETA."""
    from accelnas.core import campaign, progress

    clock = iter([0.0, 10.0, 20.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    archs = sample(10, seed=3)
    printed = io.StringIO()
    printer = ProgressPrinter(printed)  # clock 0
    for index in range(2, 10):  # the campaign reports the stored ones first
        printer(campaign.Progress(index, 10, archs[index - 1], None, "skipped"))
    done = Measurement("latency", "ms", 1.0, 0.01, 0.99, 1.01, [1.0], 1, 32, True)
    printer(campaign.Progress(1, 10, archs[0], "latency", "ok", done, elapsed=10.0))  # clock 10
    printer(campaign.Progress(10, 10, archs[9], "latency", "ok", done, elapsed=10.0))  # clock 20
    lines = printed.getvalue().splitlines()
    assert lines[-2].endswith("[10s, eta 10s]")  # one of two to measure done in 10 s
    assert lines[-1].endswith("[10s, eta 0s]")


class Counting(Faulty):
    """Faulty, counting the latency measurements it makes."""

    def __init__(self):
        self.latency_calls = 0

    @hookimpl
    def measure_latency(self, target, settings):
        self.latency_calls += 1
        return Faulty.measure_latency(self, target, settings)


def test_an_architecture_named_twice_is_measured_once(tmp_path):
    registry = load_registry([])
    plugin = Counting()
    registry.register(plugin, "counting")
    archs = [a for a in sample(20, seed=4) if a.stages[0].e != 1][:2]
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, registry.target("fake/faulty"), [archs[0], *archs, archs[1]], FAST, store,
                              metrics=["latency"])  # fmt: skip
        assert plugin.latency_calls == 2 and report.planned == 2 and report.measured == 2
        assert len(store.results(status="ok")) == 2


def test_a_model_that_cannot_be_built_is_a_recorded_failure(tmp_path, monkeypatch):
    import accelnas.core.model as model_module

    archs = [a for a in sample(20, seed=4) if a.stages[0].e != 1][:3]
    real_build = model_module.build_model

    def build(arch, *args, **kwargs):
        if arch.id == archs[1].id:
            raise MemoryError("cannot allocate the model\nException raised from alloc_cpu\nframe #0")
        return real_build(arch, *args, **kwargs)

    monkeypatch.setattr(model_module, "build_model", build)
    registry = load_registry([])
    registry.register(Counting(), "counting")
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, registry.target("fake/faulty"), archs, FAST, store, metrics=["latency"])
        assert report.measured == 2 and report.failed == 1
        (failed,) = store.results(status="failed")
        assert failed["arch_id"] == archs[1].id
        assert failed["error"] == "building the model failed: MemoryError: cannot allocate the model"


class Modelless(Counting):
    """A backend that never looks at the PyTorch model: the core need not build one."""

    @hookimpl
    def register_targets(self, register):
        register(Target("fake", "faulty", default_batch_size=2, needs_model=False))

    @hookimpl
    def export_model(self, target, architecture, model):
        self.models = [*getattr(self, "models", []), model]
        return ExportedModel(format="none") if target.name == "fake/faulty" else None


def test_a_target_that_needs_no_model_is_spared_building_one(tmp_path, monkeypatch):
    import accelnas.core.model as model_module

    def build(arch, *args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(model_module, "build_model", build)
    registry = load_registry([])
    registry.register(plugin := Modelless(), "modelless")
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, registry.target("fake/faulty"), sample(3, seed=4), FAST, store,
                              metrics=["latency"])  # fmt: skip
    assert report.measured == 3 and plugin.models == [None, None, None]


def test_a_campaign_stops_after_max_failures_and_leaves_the_rest_pending(tmp_path):
    registry = load_registry([])
    registry.register(Faulty(), "faulty")  # every throughput fails (malformed, or the export raises)
    archs = sample(12, seed=3)
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, registry.target("fake/faulty"), archs, FAST, store, metrics=["throughput"],
                              max_failures=3)  # fmt: skip
        assert report.failure_limit_reached and not report.budget_exhausted
        assert (report.failed, report.measured, report.pending) == (3, 0, 9)
        assert len(store.results(status="failed")) == 3
        again = run_campaign(registry, registry.target("fake/faulty"), archs, FAST, store, metrics=["throughput"])
        assert again.failed == 12 and not again.failure_limit_reached  # no limit: every one is tried
    with pytest.raises(ValueError, match="max_failures must be a positive int, got 0"):
        run_campaign(registry, registry.target("fake/faulty"), archs, FAST, store, max_failures=0)


def test_a_targets_protocol_is_part_of_its_settings_key():
    """What a backend times beyond the settings (a tool's environment) keys its results apart."""
    plain, timed = Target("npu", "x"), Target("npu", "x", protocol="tool MEMCMP=0")
    assert FAST.identity(plain) == {"input_size": 32, "batch_size": 4, "threads": 1, "options": {}}
    assert FAST.key(plain) == "e34f77643ccf1e72"  # as before protocols existed: existing stores still resume
    assert FAST.identity(timed)["protocol"] == "tool MEMCMP=0"
    assert FAST.key(timed) != FAST.key(plain) != FAST.key(Target("npu", "x", protocol="tool MEMCMP=1"))


class NoLatency:
    @hookimpl
    def register_targets(self, register):
        register(Target("fake", "half"))

    @hookimpl
    def export_model(self, target):
        return ExportedModel(format="none") if target.name == "fake/half" else None

    @hookimpl
    def compile(self, target):
        return CompiledModel(handle=None) if target.name == "fake/half" else None

    @hookimpl
    def measure_throughput(self, target, settings):
        return exact_measurement("throughput", 5.0, batch=settings.batch_size, input_size=settings.input_size)


@pytest.mark.parametrize("built_ins", [[], ["cpu_ort"]], ids=["alone", "beside-built-ins"])
def test_a_hook_no_plugin_implements_is_refused_before_anything_is_stored(tmp_path, built_ins):
    registry = load_registry(built_ins, use_env=False)  # cpu_ort's measure_latency serves only its own targets
    registry.register(NoLatency(), "half")
    target = registry.target("fake/half")
    with Store(tmp_path / "c.sqlite") as store:
        with pytest.raises(AccelnasError, match=r"^no loaded plugin implements measure_latency for fake/half, "
                           r"which measuring it needs \(neither its plugin 'half' nor"):  # fmt: skip
            run_campaign(registry, target, sample(2, seed=1), FAST, store)
        assert store.results(status=None) == [] and store.summary() == []
        report = run_campaign(registry, target, sample(2, seed=1), FAST, store, metrics=["throughput"])
        assert report.measured == 2


def test_an_option_the_target_does_not_declare_is_refused_before_anything_is_stored(registry, tmp_path):
    target = registry.target("cpu/torch")
    assert target.options == ()
    typo = MeasureSettings(input_size=32, options=(("precison", "fp32"),))
    with Store(tmp_path / "c.sqlite") as store:
        with pytest.raises(AccelnasError, match=r"cpu/torch has no option 'precison' \(its options: none\)"):
            run_campaign(registry, target, sample(1, seed=1), typo, store)
        assert store.results(status=None) == [] and store.summary() == []  # nothing planned either


def test_declared_options_pass_and_undeclared_targets_take_any_key():
    settings = MeasureSettings(options=(("devices", "all"), ("dtype", "bf16")))
    Target("tpu", "jax", options=["dtype", "devices"]).check_options(settings)
    Target("npu", "sdk").check_options(settings)
    with pytest.raises(UnknownOptionError, match=r"tpu/jax has no option 'devices' \(its options: dtype\)"):
        Target("tpu", "jax", options=("dtype",)).check_options(settings)


def _no_bf16(settings):
    if settings.option("dtype") == "bf16":
        raise AccelnasError("option dtype=bf16 is not supported by this SDK")


def test_option_values_a_target_refuses_stop_the_campaign_before_it_starts():
    settings = MeasureSettings(options=(("dtype", "bf16"),))
    with pytest.raises(UnknownOptionError, match=r"^target npu/sdk: option dtype=bf16 is not supported by this SDK$"):
        Target("npu", "sdk", check_values=_no_bf16).check_options(settings)
    Target("npu", "sdk", check_values=_no_bf16).check_options(MeasureSettings(options=(("dtype", "fp32"),)))
    parses = Target("npu", "sdk", check_values=lambda s: int(s.option("dtype")), plugin="npu_plugin")
    with pytest.raises(PluginError, match="plugin 'npu_plugin' raised in check_values of npu/sdk: ValueError"):
        parses.check_options(settings)


def _needs_sdk(settings):
    raise TargetUnavailableError("the npu SDK is not installed here")


def test_an_error_of_its_own_kind_from_check_values_keeps_its_exit_code():
    with pytest.raises(TargetUnavailableError) as raised:
        Target("npu", "sdk", check_values=_needs_sdk).check_options(MeasureSettings())
    assert raised.value.exit_code == 3


@pytest.mark.parametrize(
    ("target", "key", "bad", "good"),
    [
        ("cpu/onnxruntime", "graph_optimization", "bogus", "basic"),
        ("gpu/tensorrt", "precision", "int4", "fp32"),
        ("gpu/torch", "torch_compile", "maybe", "max-autotune"),
        ("tpu/jax", "dtype", "float8", "bf16"),
        ("tpu/tensorflow", "devices", 3, "all"),
        ("fpga/zcu102", "fpga_activations", "soft", "native"),
        ("fpga/vck190", "fpga_quantizer", "magic", "auto"),
        ("fpga/vck190", "fpga_calibration_images", 0, 8),
    ],
)
def test_every_built_in_backend_checks_its_option_values(target, key, bad, good):
    found = load_registry(None).target(target, require_available=False)
    with pytest.raises(UnknownOptionError, match=f"^target {target}: .*{key}"):
        found.check_options(MeasureSettings(options=((key, bad),)))
    found.check_options(MeasureSettings(options=((key, good),)))


@pytest.mark.parametrize(
    ("target", "spellings", "other"),
    [
        ("cpu/onnxruntime", [(), (("graph_optimization", "ALL"),), (("graph_optimization", " all"),)], "basic"),
        ("tpu/jax", [(), (("dtype", "float32"),), (("dtype", "FP32"),), (("devices", 1),)], None),
        ("tpu/jax", [(("dtype", "bf16"),), (("dtype", "BFLOAT16"),), (("dtype", "bf16"), ("devices", "1"))], None),
        ("gpu/tensorrt", [(), (("precision", "FP16"),), (("cuda_graphs", "false"), ("opt_level", 3))], None),
        ("gpu/torch", [(("torch_compile", True),), (("torch_compile", "default"),), (("torch_compile", "on"),)], None),
    ],
)
def test_spellings_of_one_option_value_key_results_alike(target, spellings, other):
    found = load_registry(None).target(target, require_available=False)
    keys = {MeasureSettings(options=options).key(found) for options in spellings}
    assert len(keys) == 1
    if other is not None:
        assert MeasureSettings(options=((spellings[1][0][0], other),)).key(found) not in keys


def test_options_a_check_gives_back_are_what_results_are_keyed_by(caplog):
    canonical = Target("npu", "sdk", check_values=lambda s: {"dtype": str(s.option("dtype", "fp32")).lower()})
    plain = Target("npu", "sdk", check_values=_no_bf16)
    assert canonical.check_options(MeasureSettings(options=(("dtype", "FP32"),))) == {"dtype": "fp32"}
    assert MeasureSettings().key(canonical) == MeasureSettings(options=(("dtype", "Fp32"),)).key(canonical)
    assert MeasureSettings().key(plain) != MeasureSettings(options=(("dtype", "fp32"),)).key(plain)
    odd = Target("npu", "odd", check_values=lambda s: {"dtype": object()}, plugin="npu_plugin")
    with caplog.at_level(logging.WARNING):  # not JSON: keyed as typed, as before targets gave a spelling
        for _ in range(3):
            assert odd.check_options(MeasureSettings(options=(("dtype", "FP32"),))) == {"dtype": "FP32"}
    assert caplog.text.count("check_values of npu/odd returned options that are not text keys with JSON") == 1


def test_a_calibration_file_makes_the_image_count_moot():
    fpga = load_registry(None).target("fpga/zcu102", require_available=False)
    fpga.check_options(MeasureSettings(options=(("fpga_calibration", "/data/cal.npy"), ("fpga_calibration_images", 0))))


def test_onnxruntime_graph_optimization_option(registry, tmp_path):
    target = registry.target("cpu/onnxruntime")
    basic = MeasureSettings(
        input_size=32,
        batch_size=4,
        precision=0.05,
        max_seconds=0.3,
        warmup_seconds=0.1,
        threads=1,
        options=(("graph_optimization", "disabled"),),
    )
    wrong = MeasureSettings(input_size=32, options=(("graph_optimization", "fastest"),))
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, target, [EFFICIENTNET_B0], basic, store, metrics=["latency"])
        assert report.measured == 1
        assert store.results()[0]["provenance"]["graph_optimization"] == "ORT_DISABLE_ALL"
        with pytest.raises(
            UnknownOptionError, match="graph_optimization must be one of all, extended, basic, disabled"
        ):
            run_campaign(registry, target, [EFFICIENTNET_B0], wrong, store, metrics=["latency"])
        assert len(store.results(status=None)) == 1  # refused before anything of it was stored


class HostDependent:
    """A target whose default batch depends on the host, as tpu_xla's PCI scan makes it: 8 in the
    campaign's process, 128 in any other (a worker)."""

    @staticmethod
    def _batch() -> int:
        return 8 if os.getpid() == int(os.environ.get("ACCELNAS_TEST_DRIVER_PID", "0")) else 128

    @hookimpl
    def register_targets(self, register):
        register(Target("fake", "hostdep", default_batch_size=self._batch()))

    @hookimpl
    def export_model(self, target, architecture):
        return ExportedModel(format="none") if target.name == "fake/hostdep" else None

    @hookimpl
    def compile(self, target, exported):
        return CompiledModel(handle=None) if target.name == "fake/hostdep" else None

    @hookimpl
    def measure_throughput(self, target, compiled, settings):
        if target.name != "fake/hostdep":
            return None
        return exact_measurement("throughput", 100.0, batch=settings.batch_for(target), input_size=settings.input_size)


def test_a_worker_measures_at_the_batch_the_campaign_decided(tmp_path, monkeypatch):
    from accelnas.core.isolation import IsolatedExecutor

    monkeypatch.setenv("ACCELNAS_TEST_DRIVER_PID", str(os.getpid()))
    registry = load_registry([])
    registry.register(HostDependent(), "hostdep")
    target = registry.target("fake/hostdep")
    assert target.default_batch_size == 8
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, target, sample(2, 0), MeasureSettings(input_size=32), store,
                              metrics=["throughput"], executor=IsolatedExecutor(60.0))  # fmt: skip
        rows = store.results()
    assert (report.measured, report.failed) == (2, 0), report.errors
    assert {r["batch_size"] for r in rows} == {8}  # not the worker's own default of 128


class Vanishing(Device):
    """A device that stops answering at one architecture (``ACCELNAS_TEST_GONE_AT``), as a board
    taken off the network does: its plugin raises TargetUnavailableError."""

    def __init__(self) -> None:
        latency = lambda s: exact_measurement("latency", 2.0, batch=1, input_size=s.input_size)  # noqa: E731
        super().__init__(Target("fake", "vanishing", metrics=("latency",)), latency=latency, export=self._gone)

    @staticmethod
    def _gone(architecture) -> None:
        if architecture.id == os.environ.get("ACCELNAS_TEST_GONE_AT"):
            raise TargetUnavailableError("board 10.0.0.7 does not answer (connection refused)")


@pytest.mark.parametrize("isolated", [False, True], ids=["local", "isolated"])
def test_a_device_that_goes_away_stops_the_campaign_and_leaves_the_rest_pending(tmp_path, monkeypatch, isolated):
    from accelnas.core.isolation import IsolatedExecutor

    archs = sample(4, seed=3)
    monkeypatch.setenv("ACCELNAS_TEST_GONE_AT", archs[1].id)
    registry = load_registry([])
    registry.register(Vanishing(), "vanishing")
    target = registry.target("fake/vanishing")

    def run():
        executor = IsolatedExecutor(60.0) if isolated else None
        with Store(tmp_path / "c.sqlite") as store:
            return run_campaign(registry, target, archs, FAST, store, executor=executor), store.results(status=None)

    report, rows = run()
    assert (
        report.unavailable == "plugin 'vanishing' in export_model: board 10.0.0.7 does not answer (connection refused)"
    )
    assert (report.measured, report.failed, report.pending) == (1, 0, 3)
    assert [r["arch_id"] for r in rows] == [archs[0].id]  # nothing stored for the one it went away during
    monkeypatch.delenv("ACCELNAS_TEST_GONE_AT")  # the board is back
    report, rows = run()
    assert (report.measured, report.already_done, report.unavailable) == (3, 1, None)
    assert sorted(r["arch_id"] for r in rows) == sorted(a.id for a in archs)


def test_collect_exits_3_when_the_device_goes_away_and_says_what_is_pending(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from accelnas.core import cli

    archs = sample(3, seed=4)
    monkeypatch.setenv("ACCELNAS_TEST_GONE_AT", archs[0].id)
    registry = load_registry([])
    registry.register(Vanishing(), "vanishing")
    monkeypatch.setattr(cli, "_registry", lambda: registry)
    args = ["collect", "--target", "fake/vanishing", "--db", str(tmp_path / "c.sqlite"), "--input-size", "32"]
    result = CliRunner().invoke(cli.cli, [*args, *(f"--arch={a.id}" for a in archs)])
    assert result.exit_code == 3, result.output
    assert "error: stopped, fake/vanishing is unavailable: plugin 'vanishing' in export_model: board" in result.output
    assert "3 measurement(s) pending: run the same command again once it is back" in result.output


class Spelled(Device):
    """A target that gives its options in one spelling (dtype in lower case, fp32 left out)."""

    def __init__(self) -> None:
        target = Target("fake", "spelled", metrics=("latency",), check_values=self.canonical)
        super().__init__(target, latency=lambda s: exact_measurement("latency", 3.0, batch=1, input_size=s.input_size))

    @staticmethod
    def canonical(settings):
        dtype = str(settings.option("dtype", "fp32")).lower()
        return {} if dtype == "fp32" else {"dtype": dtype}


def test_results_keyed_by_the_options_as_typed_are_resumed_under_the_targets_spelling(tmp_path):
    registry = load_registry([])
    registry.register(Spelled(), "spelled")
    target = registry.target("fake/spelled")
    typed = dataclasses.replace(FAST, options=(("dtype", "FP32"),))
    archs = sample(3, seed=8)
    assert typed.typed_key(target) != typed.key(target) == FAST.key(target)
    with Store(tmp_path / "c.sqlite") as store:  # as an earlier version stored them: under the typed key
        old_identity = typed.identity(target) | {"options": {"dtype": "FP32"}}
        for arch in archs[:2]:
            m = exact_measurement("latency", 3.0, batch=1, input_size=32)
            store.record_ok(arch, target.name, typed.typed_key(target), old_identity, m, "spelled")
        store.record_plan(archs[:2], target.name, ["latency"], typed.typed_key(target), old_identity)
        report = run_campaign(registry, target, archs, typed, store)
        rows = store.results()
        summary = store.summary()
    assert (report.already_done, report.measured) == (2, 1)  # the two stored ones are resumed, not measured again
    assert {r["settings_key"] for r in rows} == {typed.key(target)} and len(rows) == 3
    assert {s["settings_key"] for s in summary} == {typed.key(target)}  # no pending rows left under the old key


def test_a_marked_process_is_alive_only_as_the_same_process_of_this_machine():
    from accelnas.core import campaign

    me = campaign._process(os.getpid())
    machine, pid, started = me.rsplit(":", 2)
    assert campaign._alive(me) is True
    assert campaign._alive(f"{machine}:{pid}:{started}1") is False  # its pid, started anew: another process
    assert campaign._alive(f"another-machine:{pid}:{started}") is None  # cannot tell: left alone


def test_an_architecture_left_failed_by_two_deaths_does_not_spend_the_failure_limit(tmp_path):
    registry = load_registry([])
    registry.register(Spelled(), "spelled")
    target = registry.target("fake/spelled")
    archs = sample(3, seed=13)
    key = FAST.key(target)
    with Store(tmp_path / "c.sqlite") as store:
        for _ in range(2):  # two runs died measuring archs[0]
            store.mark_measuring(archs[0].id, target.name, key, "gone-machine:1:1")
            assert store.died_measuring(target.name, key, lambda process: False) == {archs[0].id: _ + 1}
        for _ in range(2):  # and a rerun is not stopped by the failure it records, nor the one after it
            report = run_campaign(registry, target, archs, FAST, store, max_failures=1)
            assert (report.crashed, report.failure_limit_reached) == (1, False)
        rows = {r["arch_id"]: r for r in store.results(status=None)}
    assert report.failed == 1 and report.already_done == 2
    assert rows[archs[0].id]["status"] == "failed" and rows[archs[0].id]["attempts"] == 1
    assert rows[archs[1].id]["status"] == rows[archs[2].id]["status"] == "ok"


def test_moving_typed_results_keeps_a_measurement_over_a_failure(tmp_path):
    registry = load_registry([])
    registry.register(Spelled(), "spelled")
    target = registry.target("fake/spelled")
    typed = dataclasses.replace(FAST, options=(("dtype", "FP32"),))
    arch = sample(1, seed=14)[0]
    with Store(tmp_path / "c.sqlite") as store:
        store.record_ok(
            arch,
            target.name,
            typed.typed_key(target),
            {},
            exact_measurement("latency", 3.0, batch=1, input_size=32),
            "spelled",
        )
        store.record_failure(arch, target.name, "latency", typed.key(target), {}, "a failure", "spelled")
        report = run_campaign(registry, target, [arch], typed, store)
        rows = store.results(status=None)
    assert (report.measured, report.already_done) == (0, 1)
    assert [(r["settings_key"], r["status"], r["value"]) for r in rows] == [(typed.key(target), "ok", 3.0)]


def test_a_retry_the_time_budget_leaves_unsubmitted_is_counted_pending(tmp_path):
    """A transient failure whose task was still measuring when the budget ran out is measured again by the
    next run: the summary counts it pending, like status, not lost between measured, failed and pending."""
    import time

    def reset(settings):
        time.sleep(0.3)  # past the budget
        raise ConnectionResetError("connection reset by the device host")

    latency = lambda s: exact_measurement("latency", 2.0, batch=1, input_size=s.input_size)  # noqa: E731
    registry = load_registry([])
    registry.register(Device(Target("fake", "flaky"), latency=latency, throughput=reset), "flaky")
    with Store(tmp_path / "c.sqlite") as store:
        report = run_campaign(registry, registry.target("fake/flaky"), sample(2, seed=1), FAST, store, time_budget=0.1)
        failures = store.results(status="failed")
    assert report.budget_exhausted and (report.measured, report.failed, report.retried) == (0, 0, 1)
    assert report.pending == 4  # the throughput to retry, the latency in flight, and the other architecture
    assert [r["metric"] for r in failures] == ["throughput"]  # stored, and retried by the next run
