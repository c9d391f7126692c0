"""gpu/tensorrt and gpu/torch without a GPU: options, availability reporting, per-architecture failures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from accelnas.core.campaign import run_campaign
from accelnas.core.errors import AccelnasError, TargetUnavailableError, UnknownOptionError
from accelnas.core.plugins import load_registry
from accelnas.core.records import MeasureSettings
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.core.store import Store
from accelnas.plugins.cuda_trt import probe
from accelnas.plugins.cuda_trt.cuda_device import require_cuda
from accelnas.plugins.cuda_trt.errors import GpuOptionError, GpuOutOfMemoryError, is_out_of_memory, out_of_memory
from accelnas.plugins.cuda_trt.options import GpuOptions, parse_options
from accelnas.plugins.cuda_trt.plugin import DEFAULT_BATCH, CudaTrtPlugin
from accelnas.plugins.cuda_trt.probe import GpuProbe, probe_gpu

FAST = MeasureSettings(input_size=32, batch_size=4, precision=0.05, max_seconds=0.5, warmup_seconds=0.2, threads=1)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Model building and export here are tiny; one thread avoids spin-waiting on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _registry(probe: GpuProbe, tmp_path):
    registry = load_registry([])
    registry.register(CudaTrtPlugin(probe=lambda: probe, cache_dir=tmp_path / "engines"), "cuda_trt")
    return registry


# -- options -----------------------------------------------------------------------------------------
def test_option_defaults_and_parsing():
    assert parse_options("tensorrt", {}) == GpuOptions(backend="tensorrt")
    assert parse_options("torch", MeasureSettings()).precision == "fp16"
    opts = parse_options(
        "tensorrt",
        {"precision": "FP32", "device": "1", "cuda_graphs": "true", "workspace_mib": 2048, "opt_level": 5},
    )
    assert (opts.precision, opts.device, opts.cuda_graphs, opts.workspace_mib, opts.opt_level) == (
        "fp32",
        1,
        True,
        2048,
        5,
    )
    assert parse_options("torch", {"torch_compile": True}).torch_compile == "default"
    assert parse_options("torch", {"torch_compile": "max-autotune"}).torch_compile == "max-autotune"
    assert parse_options("torch", {"torch_compile": "off"}).torch_compile is None
    settings = MeasureSettings(options=(("check_fp16", False), ("precision", "fp32")))
    assert parse_options("tensorrt", settings).check_fp16 is False
    # --option cuda_graphs=1 reads as the number 1: it means what "1" and true mean, and keys alike
    assert parse_options("tensorrt", {"cuda_graphs": 1}).cuda_graphs is True
    assert parse_options("tensorrt", {"cuda_graphs": 0}) == parse_options("tensorrt", {"cuda_graphs": "false"})


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("tensorrt", {"torch_compile": True}, "does not apply to gpu/tensorrt"),
        ("torch", {"cuda_graphs": True}, "does not apply to gpu/torch"),
        ("torch", {"threads": 3}, "does not apply"),
        ("tensorrt", {"precision": "int8"}, "'precision' must be one of fp16, fp32"),
        ("tensorrt", {"opt_level": 9}, "'opt_level' must be 0..5"),
        ("tensorrt", {"workspace_mib": 0}, "'workspace_mib' must be >= 1"),
        ("tensorrt", {"workspace_mib": 1.5}, "must be an integer"),
        ("torch", {"device": -1}, "'device' must be >= 0"),
        ("torch", {"device": True}, "must be an integer"),
        ("torch", {"torch_compile": "fastest"}, "'torch_compile' must be"),
        ("tensorrt", {"cuda_graphs": "maybe"}, "must be true or false"),
        ("tensorrt", {"cuda_graphs": 2}, "must be true or false"),
        ("tpu", {}, "unknown GPU backend"),
    ],
)
def test_bad_options_give_one_line_errors(backend, options, message):
    with pytest.raises(GpuOptionError, match=message) as info:
        parse_options(backend, options)
    assert isinstance(info.value, AccelnasError) and "\n" not in str(info.value)


# -- availability --------------------------------------------------------------------------------------
def test_targets_unavailable_with_the_probe_reason(tmp_path):
    no_gpu = GpuProbe(cuda_ok=False, cuda_reason="no NVIDIA GPU found: NVML could not initialise (no driver)")
    targets = _registry(no_gpu, tmp_path).targets()
    assert set(targets) == {"gpu/tensorrt", "gpu/torch"}
    for t in targets.values():
        assert not t.available and t.reason == no_gpu.cuda_reason
        assert t.kind == "gpu" and t.default_batch_size == DEFAULT_BATCH and t.plugin == "cuda_trt"
    registry = _registry(no_gpu, tmp_path)
    with pytest.raises(TargetUnavailableError, match="gpu/torch is unavailable here: no NVIDIA GPU found"):
        registry.target("gpu/torch")

    no_trt = GpuProbe(cuda_ok=True, tensorrt_ok=False, tensorrt_reason="TensorRT is not installed (pip install)")
    targets = _registry(no_trt, tmp_path).targets()
    assert targets["gpu/torch"].available and targets["gpu/torch"].reason is None
    assert not targets["gpu/tensorrt"].available and targets["gpu/tensorrt"].reason == no_trt.tensorrt_reason

    both = GpuProbe(cuda_ok=True, tensorrt_ok=True, tensorrt_version="10.13.0", gpu_name="NVIDIA H100")
    targets = _registry(both, tmp_path).targets()
    assert all(t.available for t in targets.values())
    assert "NVIDIA H100" in targets["gpu/tensorrt"].description
    several = GpuProbe(cuda_ok=True, tensorrt_ok=True, tensorrt_version="10.13.0", gpu_name="NVIDIA H100",
                       device_count=4)  # fmt: skip
    described = _registry(several, tmp_path).targets()["gpu/torch"].description
    assert "(device 0 of 4: NVIDIA H100; option device)" in described  # the name is device 0's


def test_real_probe_explains_what_is_missing_here():
    import torch

    found = probe_gpu()
    if found.cuda_ok:
        pytest.skip("this machine has a usable CUDA GPU")
    assert not found.tensorrt_available and found.cuda_reason
    assert found.tensorrt_unavailable_reason == found.torch_reason == found.cuda_reason
    assert "NVIDIA GPU" in found.cuda_reason or "CPU-only build" in found.cuda_reason or "CUDA" in found.cuda_reason
    if torch.version.cuda is None:
        with pytest.raises(AccelnasError, match="CPU-only build"):
            require_cuda(0)


def test_a_tensorrt_that_does_not_import_is_explained_in_one_line(tmp_path, monkeypatch):
    package = tmp_path / "tensorrt"
    package.mkdir()
    (package / "__init__.py").write_text(
        'raise ImportError("\\nA module compiled using NumPy 1.x cannot be run in\\nNumPy 2.2 as it may crash.")'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    ok, reason, version = probe._tensorrt()
    assert not ok and version is None
    assert reason == "TensorRT does not import (ImportError: A module compiled using NumPy 1.x cannot be run in)"


def test_builtin_plugin_lists_both_targets():
    targets = load_registry(["cuda_trt"]).targets()
    assert {"gpu/tensorrt", "gpu/torch"} <= set(targets)
    for t in targets.values():
        assert t.available or t.reason  # unavailable targets always say why


# -- failures: per architecture, or the campaign stops ---------------------------------------------------
def test_build_failures_are_stored_per_architecture_and_a_missing_cuda_stops_the_campaign(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("with a GPU these campaigns would measure")
    claims_gpu = GpuProbe(cuda_ok=True, tensorrt_ok=True, tensorrt_version="10.13.0", gpu_name="NVIDIA claimed")
    registry = _registry(claims_gpu, tmp_path)
    archs = [EFFICIENTNET_B0, *sample(1, seed=21)]
    with Store(tmp_path / "gpu.sqlite") as store:
        # gpu/tensorrt: real ONNX export and fp16 conversion, then the engine build fails (no TensorRT here)
        report = run_campaign(registry, registry.target("gpu/tensorrt"), archs, FAST, store, metrics=["latency"])
        assert (report.planned, report.measured, report.failed) == (2, 0, 2)
        rows = store.results(target="gpu/tensorrt", status="failed")
        assert [r["arch_id"] for r in rows] == [a.id for a in archs]
        for r in rows:
            assert r["plugin"] == "cuda_trt"
            assert "raised in compile" in r["error"] and "TensorRT is not importable" in r["error"]
        # gpu/torch: CUDA is missing, which every architecture would fail alike: the campaign stops
        report = run_campaign(registry, registry.target("gpu/torch"), archs, FAST, store)
        assert (report.measured, report.failed) == (0, 0) and "CUDA is not usable" in report.unavailable
        assert store.results(target="gpu/torch", status=None) == []
        # an option of the other backend and a bad value are refused up front; earlier failures stay stored
        other = MeasureSettings(input_size=32, options=(("torch_compile", True),))
        with pytest.raises(UnknownOptionError, match="gpu/tensorrt has no option 'torch_compile'"):
            run_campaign(registry, registry.target("gpu/tensorrt"), archs[:1], other, store)
        bad = MeasureSettings(input_size=32, options=(("precision", "fp8"),))
        with pytest.raises(UnknownOptionError, match="option 'precision' must be one of fp16, fp32, got 'fp8'"):
            run_campaign(registry, registry.target("gpu/tensorrt"), archs[:1], bad, store)
        assert len(store.results(status="failed")) == 2


def test_a_cuda_device_that_does_not_exist_stops_the_campaign(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    registry = _registry(GpuProbe(cuda_ok=True, tensorrt_ok=True, tensorrt_version="10.13.0"), tmp_path)
    settings = MeasureSettings(input_size=32, batch_size=2, options=(("device", 3),))
    with Store(tmp_path / "gpu.sqlite") as store:
        report = run_campaign(registry, registry.target("gpu/torch"), sample(2, seed=1), settings, store)
        assert "CUDA device 3 does not exist (this machine has 1)" in report.unavailable
        assert store.results(status=None) == []  # nothing stored: the same command runs once the device is right


def test_out_of_memory_errors_are_recognised_and_explained():
    import torch

    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
    assert is_out_of_memory(oom)
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    err = out_of_memory(oom, "measuring throughput", 512)
    assert isinstance(err, GpuOutOfMemoryError) and isinstance(err, AccelnasError)
    text = str(err)
    assert "at batch 512" in text and "--batch-size" in text and "Tried to allocate 2.00 GiB" in text
    assert "\n" not in text
    assert not is_out_of_memory(err)  # already explained: not wrapped twice


def test_gpu_check_script_reports_a_missing_gpu(tmp_path):
    if probe_gpu().cuda_ok:
        pytest.skip("this machine has a usable CUDA GPU")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--num-random", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["error"].startswith("no usable CUDA GPU") and report["results"] == []
    assert set(report["availability"]) == {"gpu/torch", "gpu/tensorrt"}
    assert len(report["architectures"]) == 3 and report["architectures"][0]["label"] == "EfficientNet-B0"


def test_the_tensorrt_version_comes_from_the_module_in_use_or_any_nvidia_wheel(monkeypatch):
    import sys
    import types

    from accelnas.plugins.cuda_trt import gpu_provenance

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.3.9"))
    assert gpu_provenance.tensorrt_version() == "10.13.3.9"
    monkeypatch.delitem(sys.modules, "tensorrt")
    installed = {"tensorrt-cu12": "10.12.0.36"}  # NVIDIA's per-CUDA wheel, no `tensorrt` distribution
    monkeypatch.setattr(gpu_provenance, "package_version", installed.get)
    assert gpu_provenance.tensorrt_version() == "10.12.0.36"
    monkeypatch.setattr(gpu_provenance, "package_version", {}.get)
    assert gpu_provenance.tensorrt_version() is None
