"""tpu/tensorflow: the Keras network equals the PyTorch one; the XLA path compiles and measures on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from accelnas.core.model import build_model, calibrate_batchnorm, count_params
from accelnas.core.plugins import load_registry
from accelnas.core.records import MeasureSettings
from accelnas.core.space import parse_architecture, sample
from accelnas.plugins.tpu_xla.detect import ALLOW_CPU_ENV, scan_pci
from accelnas.plugins.tpu_xla.program import random_input

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")
keras_net = pytest.importorskip("accelnas.plugins.tpu_xla.keras_net")
if scan_pci().present:  # a TPU's float32 convolutions take bfloat16 passes: the 1e-4 checks are the CPU's
    pytest.skip("these tests check XLA's CPU platform, and a TPU is attached", allow_module_level=True)

SIZE = 32
# stride-2 stages with 5x5 kernels, expansion 1/4/6, squeeze-excite on and off: every padding case
RICH = "1511-6521-4310-6530-1521-4341-6311"
SMALL = "1311-4511-6511-1511-4311-6511-1310"


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("arch", [parse_architecture("b0"), sample(1, seed=5)[0]], ids=["b0", "random"])
def test_keras_parameter_count_equals_pytorch(arch):
    model = keras_net.build_keras_model(arch, SIZE)
    assert keras_net.trainable_params(model) == count_params(arch)
    assert model.output_shape == (None, 1000)


@pytest.mark.parametrize("size", [SIZE, 35])
def test_keras_outputs_equal_pytorch_on_copied_weights(size):
    arch = parse_architecture(RICH)
    torch_model = calibrate_batchnorm(build_model(arch), size)
    model = keras_net.build_keras_model(arch, size)
    copied = keras_net.copy_torch_weights(model, torch_model)
    weighted = (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)
    n_modules = sum(isinstance(m, weighted) for m in torch_model.modules())
    assert copied == n_modules
    x = random_input(2, size, seed=1)
    ref = _torch_logits(torch_model, x)
    y = model(x.transpose(0, 2, 3, 1), training=False).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_keras_network_is_channels_last_whatever_keras_json_says():
    """A user's keras.json may set image_data_format channels_first; the network stays NHWC."""
    keras = keras_net.import_keras()
    before = keras.config.image_data_format()
    arch = parse_architecture(RICH)
    torch_model = calibrate_batchnorm(build_model(arch), SIZE)
    keras.config.set_image_data_format("channels_first")
    try:
        model = keras_net.build_keras_model(arch, SIZE)
    finally:
        keras.config.set_image_data_format(before)
    keras_net.copy_torch_weights(model, torch_model)
    x = random_input(2, SIZE, seed=3)
    ref = _torch_logits(torch_model, x)
    y = model(x.transpose(0, 2, 3, 1), training=False).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_keras_bf16_policy_stays_close():
    arch = parse_architecture(SMALL)
    torch_model = calibrate_batchnorm(build_model(arch), SIZE)
    model = keras_net.build_keras_model(arch, SIZE, bf16=True)
    keras_net.copy_torch_weights(model, torch_model)
    assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    assert {w.dtype for w in model.weights} == {"bfloat16"}  # weights too, as tpu/jax casts them
    x = random_input(2, SIZE, seed=2)
    ref = _torch_logits(torch_model, x)
    y = model(x.transpose(0, 2, 3, 1), training=False).numpy()
    err = float(np.sqrt(((y - ref) ** 2).mean() / (ref**2).mean()))
    assert 1e-4 < err < 0.3


def test_tensorflow_xla_compiles_measures_and_matches(monkeypatch, tmp_path):
    monkeypatch.setenv(ALLOW_CPU_ENV, "1")
    registry = load_registry(["tpu_xla"], use_env=False)
    target = registry.target("tpu/tensorflow")
    arch = parse_architecture(SMALL)
    torch_model = calibrate_batchnorm(build_model(arch), SIZE)
    settings = MeasureSettings(input_size=SIZE, batch_size=1, max_seconds=0.5, warmup_seconds=0.2, min_samples=5)
    exported, _ = registry.call_first(
        "export_model", target=target, architecture=arch, model=torch_model, settings=settings, workdir=tmp_path
    )
    assert exported.format == "keras" and exported.info["params"] == count_params(arch)
    compiled, plugin = registry.call_first(
        "compile", target=target, exported=exported, settings=settings, workdir=tmp_path
    )
    assert plugin == "tpu_xla" and compiled.info["compile_seconds"]["1"] > 0
    assert "jit_compile=True" in compiled.info["compile_step"]

    x = random_input(1, SIZE, seed=9)
    ref = _torch_logits(torch_model, x)
    np.testing.assert_allclose(compiled.handle.predict(x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())

    tput, _ = registry.call_first("measure_throughput", target=target, compiled=compiled, settings=settings)
    lat, _ = registry.call_first("measure_latency", target=target, compiled=compiled, settings=settings)
    assert tput.metric == "throughput" and tput.batch_size == 1 and tput.mean > 0
    assert lat.metric == "latency" and lat.extra["compile_seconds"] > 0
    prov = lat.provenance
    assert prov["backend"] == "tensorflow" and prov["xla_platform"] == "cpu" and prov["on_tpu"] is False
    assert prov["tensorflow"] and prov["keras"]
