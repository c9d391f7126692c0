"""benchmarks/gpu_check.py's flow, on the CPU: the cuda_trt plugin believes it has a GPU and TensorRT,
and times a matrix product instead, so every pass, variant, JSON field and the plot are exercised."""

from __future__ import annotations

import json

import numpy as np
from conftest import load_benchmark

import accelnas.plugins.cuda_trt.plugin as cuda_plugin
from accelnas.core.records import CompiledModel, ExportedModel
from accelnas.core.timing import latency_measurement, measure_for, throughput_measurement
from accelnas.plugins.cuda_trt.probe import GpuProbe


class PretendGpu(cuda_plugin.CudaTrtPlugin):
    """The real plugin's targets and options; a matrix product stands in for the network."""

    failing = ""  # the architecture whose TensorRT engine build fails

    def __init__(self, *args, **kwargs):
        super().__init__(probe=lambda: GpuProbe(cuda_ok=True, tensorrt_ok=True, gpu_name="pretend"), cache_dir=None)

    @cuda_plugin.hookimpl
    def export_model(self, target, architecture, model, settings, workdir):
        if not self.serves(target):
            return None
        return ExportedModel(format="none", info={"layers": architecture.num_layers, "arch": architecture.id})

    @cuda_plugin.hookimpl
    def compile(self, target, exported, settings, workdir):
        if not self.serves(target):
            return None
        if target.backend == "tensorrt" and exported.info["arch"] == self.failing:
            raise RuntimeError("engine build failed: out of workspace")
        n = 4 * exported.info["layers"]
        return CompiledModel(handle=np.ones((n, n), np.float32), info=dict(exported.info))

    def _measure(self, target, compiled, settings, metric):
        a = compiled.handle
        result = measure_for(lambda: a @ a, settings)
        if metric == "latency":
            return latency_measurement(result, input_size=settings.input_size)
        return throughput_measurement(result, batch_size=settings.batch_for(target), input_size=settings.input_size)


def test_gpu_check_measures_every_pass_and_variant_and_keeps_failures(tmp_path, monkeypatch):
    from accelnas.core.space import EFFICIENTNET_B0, sample

    gpu_check = load_benchmark("gpu_check")
    monkeypatch.setattr(PretendGpu, "failing", sample(2, 0, exclude={EFFICIENTNET_B0.id})[1].id)  # random-2
    monkeypatch.setattr(cuda_plugin, "CudaTrtPlugin", PretendGpu)
    monkeypatch.setattr("accelnas.plugins.cuda_trt.gpu_provenance.gpu_provenance", lambda index=0: {"name": "pretend"})
    args = ["--out", str(tmp_path), "--num-random", "2", "--input-size", "32", "--max-seconds", "0.2",
            "--warmup-seconds", "0.05", "--budget", "900"]  # fmt: skip
    assert gpu_check.main(args) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    summary = report["summary"]
    assert summary["gpu/torch"]["ok"] == 6 and summary["gpu/torch"]["failed"] == 0  # 3 architectures x 2 metrics
    assert summary["gpu/tensorrt"]["ok"] == 4 and summary["gpu/tensorrt"]["failed"] == 2
    assert all("out of workspace" in r["error"] for r in report["results"] if r["status"] == "failed")
    assert set(summary["variants"]) == {"gpu/torch fp32", "gpu/tensorrt cuda_graphs=true", "gpu/tensorrt fp32"}
    for variant in summary["variants"].values():  # EfficientNet-B0 and the first random architecture
        assert variant["ok"] == 4 and set(variant["throughput"]) == {"EfficientNet-B0", "random-1"}
    assert summary["kendall_tau_torch_vs_tensorrt"]["throughput"] is None  # 2 in common: too few for a τ
    assert report["plot"] and (tmp_path / "gpu_check_throughput.png").stat().st_size > 5_000
    # the JSON is replaced whole after each architecture (a kill leaves the last complete one), not
    # rewritten in place: a hard link to the report of an earlier run keeps that report
    kept = tmp_path / "earlier.json"
    kept.hardlink_to(tmp_path / "gpu_check.json")
    monkeypatch.setattr(PretendGpu, "failing", "")
    assert gpu_check.main([*args[:3], "0", *args[4:]]) == 0
    assert json.loads(kept.read_text()) == report
    assert json.loads((tmp_path / "gpu_check.json").read_text())["summary"]["gpu/torch"]["ok"] == 2


def test_gpu_check_refuses_bad_arguments_before_measuring(tmp_path, caplog):
    """What the GPU would refuse mid-run is exit 2 and one logged line, with or without a GPU."""
    gpu_check = load_benchmark("gpu_check")
    taken = tmp_path / "taken"
    taken.write_text("")
    cases = {("--out", str(taken)): f"cannot use {taken} as --out",
             ("--num-random", "-1"): "--num-random must be >= 0, got -1",
             ("--seed", "-1"): "--seed must be within 0..2147483647, got -1",
             ("--input-size", "0"): "input size must be within 16..1024, got 0",
             ("--budget", "-5"): "--budget must be a positive number of seconds, got -5.0",
             ("--budget", "nan"): "--budget must be a positive number of seconds, got nan"}  # fmt: skip
    for args, expected in cases.items():
        caplog.clear()
        assert gpu_check.main(["--out", str(tmp_path / "out"), *args]) == 2  # a later --out wins
        assert next(r.getMessage() for r in caplog.records if r.levelname == "ERROR").startswith(expected)
    assert not (tmp_path / "out" / "gpu_check.json").exists()


def test_engine_cache_off_switches_the_cache_off_as_the_environment_variable_does(tmp_path, monkeypatch):
    from pathlib import Path

    from accelnas.plugins.cuda_trt.engine_cache import cache_dir_from

    assert cache_dir_from("off") is None and cache_dir_from(" None ") is None
    assert cache_dir_from("~/engines") == Path.home() / "engines"
    gpu_check = load_benchmark("gpu_check")
    given = []

    class Recording(PretendGpu):
        def __init__(self, *args, **kwargs):
            given.append(kwargs.get("cache_dir", "default"))
            super().__init__()

    monkeypatch.setattr(cuda_plugin, "CudaTrtPlugin", Recording)
    monkeypatch.setattr("accelnas.plugins.cuda_trt.gpu_provenance.gpu_provenance", lambda index=0: {"name": "pretend"})
    args = ["--num-random", "0", "--input-size", "32", "--max-seconds", "0.05", "--warmup-seconds", "0.01"]
    for cache in ("off", str(tmp_path / "engines"), None):
        extra = [] if cache is None else ["--engine-cache", cache]
        assert gpu_check.main(["--out", str(tmp_path / "out"), *args, *extra]) == 0
    assert given == [None, tmp_path / "engines", "default"]  # "off" used to be a folder named off
    assert not Path("off").exists()
