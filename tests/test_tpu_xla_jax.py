"""tpu/jax on XLA's CPU platform: the real torchax + jax.jit compile/measure path at 32 px.

XLA compiles are slow on a small CI machine, so the tests share one small architecture (one layer
per stage, every MBConv feature present: expansion 1/4/6, kernels 3/5, stride 2, squeeze-excite).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from accelnas.core.errors import TargetUnavailableError
from accelnas.core.plugins import load_registry
from accelnas.core.records import CompiledModel, MeasureSettings
from accelnas.plugins.tpu_xla.detect import ALLOW_CPU_ENV, XlaPlatformError, scan_pci
from accelnas.plugins.tpu_xla.program import random_input

torch = pytest.importorskip("torch")
pytest.importorskip("jax")
if importlib.util.find_spec("torchax") is None:  # importing it bare needs the shim, so only look it up
    pytest.skip("torchax is not installed", allow_module_level=True)
if scan_pci().present:  # a TPU's float32 convolutions take bfloat16 passes: the 1e-4 checks are the CPU's
    pytest.skip("these tests check XLA's CPU platform, and a TPU is attached", allow_module_level=True)

ARCH = "1311-4511-6511-1511-4311-6511-1310"
SIZE = 32
QUICK = {"input_size": SIZE, "max_seconds": 0.5, "warmup_seconds": 0.2, "min_samples": 5}


@pytest.fixture(scope="module")
def net():
    from accelnas.core.model import build_model, calibrate_batchnorm
    from accelnas.core.space import parse_architecture

    arch = parse_architecture(ARCH)
    return arch, calibrate_batchnorm(build_model(arch), SIZE)


def _logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _rel_rms(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sqrt(((y - ref) ** 2).mean() / (ref**2).mean()))


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setenv(ALLOW_CPU_ENV, "1")
    return load_registry(["tpu_xla"], use_env=False)


def _compile(registry, net, settings, tmp_path) -> CompiledModel:
    arch, model = net
    target = registry.target("tpu/jax")
    exported, _ = registry.call_first(
        "export_model", target=target, architecture=arch, model=model, settings=settings, workdir=tmp_path
    )
    assert exported.format == "torchax"
    from accelnas.core.model import count_params

    assert exported.info["params"] == count_params(arch)
    compiled, plugin = registry.call_first(
        "compile", target=target, exported=exported, settings=settings, workdir=tmp_path
    )
    assert plugin == "tpu_xla"
    return compiled


def test_jax_compiles_measures_and_matches_pytorch(registry, net, tmp_path):
    settings = MeasureSettings(batch_size=2, **QUICK)
    compiled = _compile(registry, net, settings, tmp_path)
    program = compiled.handle
    assert compiled.info["xla_platform"] == "cpu" and compiled.info["on_tpu"] is False
    assert compiled.info["compile_seconds"]["2"] > 0

    x = random_input(2, SIZE, seed=7)
    y = program.predict(x)
    ref = _logits(net[1], x)
    assert y.shape == (2, 1000)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())

    target = registry.target("tpu/jax")
    tput, _ = registry.call_first("measure_throughput", target=target, compiled=compiled, settings=settings)
    assert tput.metric == "throughput" and tput.batch_size == 2 and tput.input_size == SIZE
    assert tput.extra["compile_seconds"] > 0 and tput.extra["parallel_devices"] == 1
    assert tput.extra["batch_per_device"] == tput.batch_size
    prov = tput.provenance
    assert prov["xla_platform"] == "cpu" and prov["device_kind"] == "cpu" and prov["dtype"] == "float32"
    assert prov["jax"] and prov["jaxlib"] and prov["torchax"] and "libtpu" in prov
    assert prov["cpu_model"]  # host provenance from the core

    lat, _ = registry.call_first("measure_latency", target=target, compiled=compiled, settings=settings)
    assert lat.metric == "latency" and lat.batch_size == 1 and lat.unit == "ms"
    assert set(program.compile_seconds) == {1, 2}  # batch 1 got its own explicit compile
    assert lat.extra["min"] <= lat.extra["p50"] <= lat.extra["max"]
    json.dumps(tput.to_dict())


def test_bf16_runs_in_bfloat16(registry, net, tmp_path):
    from accelnas.plugins.tpu_xla.plugin import build_program

    arch, model = net
    target = registry.target("tpu/jax")
    settings = MeasureSettings(batch_size=1, options=(("dtype", "bf16"),), **QUICK)
    exported = registry.call_first(
        "export_model", target=target, architecture=arch, model=model, settings=settings, workdir=tmp_path
    )[0]
    program = build_program(target, exported, settings)
    x = random_input(1, SIZE, seed=3)
    err = _rel_rms(program.predict(x), _logits(model, x))
    assert 1e-4 < err < 0.3  # bf16 rounding is visible, yet the logits agree
    assert program.facts()["dtype"] == "bfloat16"


def test_without_tpu_or_switch_the_target_refuses(monkeypatch, net):
    monkeypatch.delenv(ALLOW_CPU_ENV, raising=False)
    registry = load_registry(["tpu_xla"], use_env=False)
    with pytest.raises(TargetUnavailableError, match=ALLOW_CPU_ENV):
        registry.target("tpu/jax")
    from accelnas.plugins.tpu_xla.jax_backend import select_devices

    with pytest.raises(XlaPlatformError, match="no TPU found"):
        select_devices(all_devices=False)


ALL_DEVICES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from accelnas.core.model import build_model, calibrate_batchnorm
    from accelnas.core.records import MeasureSettings
    from accelnas.core.space import parse_architecture
    from accelnas.plugins.tpu_xla.jax_backend import JaxProgram, export_torchax
    from accelnas.plugins.tpu_xla.options import XlaOptionError, parse_options
    from accelnas.plugins.tpu_xla.program import random_input, measure_throughput
    from accelnas.core.plugins import load_registry

    arch = parse_architecture(sys.argv[1])
    model = calibrate_batchnorm(build_model(arch), 32)
    settings = MeasureSettings(input_size=32, batch_size=2, max_seconds=0.3, warmup_seconds=0.1,
                               min_samples=3, options=(("devices", "all"),))
    states, fn = export_torchax(model).obj
    program = JaxProgram(states, fn, 32, parse_options(settings))
    x = random_input(2, 32, seed=11)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    err = float(np.abs(program.predict(x) - ref).max() / np.abs(ref).max())
    target = load_registry(["tpu_xla"], use_env=False).target("tpu/jax")
    m = measure_throughput(target, program, settings)
    try:
        program.runner(3)
        uneven = "accepted"
    except XlaOptionError as exc:
        uneven = str(exc)
    print(json.dumps({"devices": program.devices, "err": err, "parallel": m.extra["parallel_devices"],
                      "per_device": m.extra["batch_per_device"], "batch": m.batch_size, "uneven": uneven}))
    """
)


def test_all_devices_shards_the_batch():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    env[ALLOW_CPU_ENV] = "1"
    out = subprocess.run(
        [sys.executable, "-c", ALL_DEVICES_SCRIPT, ARCH],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=Path(__file__).parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["devices"]) == 2 and result["parallel"] == 2 and result["batch"] == 2
    assert result["per_device"] == 1  # the batch is the total, split over the devices
    assert result["err"] < 1e-4
    assert "evenly" in result["uneven"]
