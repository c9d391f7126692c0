"""fp16 ONNX graphs for strongly typed TensorRT engines: validity (ONNX checker) and agreement with fp32 (CPU)."""

import numpy as np
import onnx
import pytest

from accelnas.core.model import build_model, calibrate_batchnorm
from accelnas.core.records import MeasureSettings, Target
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.plugins.cpu_ort.plugin import export_onnx
from accelnas.plugins.cuda_trt.errors import Fp16ConversionError
from accelnas.plugins.cuda_trt.fp16_onnx import (
    FP16_MIN_COSINE,
    FP16_RELATIVE_TOLERANCE,
    agreement,
    checked_fp16,
    compare_fp16,
    convert_to_fp16,
)
from accelnas.plugins.cuda_trt.plugin import CudaTrtPlugin
from accelnas.plugins.cuda_trt.probe import GpuProbe

SIZE = 32
FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Model building and export here are tiny; one thread avoids spin-waiting on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fp32_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    graphs = {}
    for arch in [EFFICIENTNET_B0, *sample(1, seed=7)]:
        model = calibrate_batchnorm(build_model(arch), SIZE)
        graphs[arch.id] = export_onnx(model, root / f"{arch.id}.onnx", SIZE)
    return graphs


def test_fp16_graphs_are_valid_and_agree_with_fp32(fp32_graphs, tmp_path):
    for arch_id, fp32 in fp32_graphs.items():
        fp16 = convert_to_fp16(fp32, tmp_path / f"{arch_id}.fp16.onnx")
        model = onnx.load(str(fp16))
        onnx.checker.check_model(model, full_check=True)
        # weights are fp16, the interface stays fp32 (a Cast at each end)
        kinds = {init.data_type for init in model.graph.initializer}
        assert FLOAT16 in kinds and FLOAT not in kinds
        assert [i.type.tensor_type.elem_type for i in model.graph.input] == [FLOAT]
        assert [o.type.tensor_type.elem_type for o in model.graph.output] == [FLOAT]
        assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
        result = compare_fp16(fp32, fp16, SIZE, batch=2)
        assert result.ok and result.finite
        assert 0 < result.relative_error <= FP16_RELATIVE_TOLERANCE and result.cosine >= FP16_MIN_COSINE
        assert result.top1_agreement == 1.0 and result.batch == 2


def test_a_wrong_fp16_graph_is_caught(fp32_graphs, tmp_path):
    fp32 = next(iter(fp32_graphs.values()))
    fp16 = convert_to_fp16(fp32, tmp_path / "wrong.fp16.onnx")
    model = onnx.load(str(fp16))
    # scale the classifier weights: a conversion bug of this size must not pass
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(weights) * np.float16(1.5)
    weights.CopyFrom(onnx.numpy_helper.from_array(array.astype(np.float16), weights.name))
    onnx.save(model, str(fp16))
    result = compare_fp16(fp32, fp16, SIZE)
    assert not result.ok and result.relative_error > FP16_RELATIVE_TOLERANCE


def test_agreement_flags_overflow_and_noise():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 1000))
    assert agreement(ref, ref.astype(np.float16), SIZE).ok
    overflow = ref.copy()
    overflow[1, 3] = np.inf
    bad = agreement(ref, overflow, SIZE)
    assert not bad.finite and not bad.ok
    noisy = agreement(ref, ref + 0.2 * rng.standard_normal(ref.shape), SIZE)
    assert not noisy.ok and noisy.cosine < FP16_MIN_COSINE
    with pytest.raises(Fp16ConversionError, match="shape"):
        agreement(ref, ref[:2], SIZE)


def test_unreadable_graph_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx graph")
    with pytest.raises(Fp16ConversionError, match="cannot read ONNX graph"):
        checked_fp16(broken, tmp_path / "out.onnx", SIZE)


def test_tensorrt_export_hook_writes_the_checked_fp16_graph(tmp_path):
    plugin = CudaTrtPlugin(probe=lambda: GpuProbe(cuda_ok=False, cuda_reason="none"), cache_dir=None)
    target = Target("gpu", "tensorrt", kind="gpu")
    arch = sample(1, seed=8)[0]
    model = calibrate_batchnorm(build_model(arch), SIZE)
    exported = plugin.export_model(target, arch, model, MeasureSettings(input_size=SIZE), tmp_path)
    assert exported.format == "onnx" and exported.path.name == f"{arch.id}.fp16.onnx"
    assert exported.info["precision"] == "fp16" and exported.info["arch_id"] == arch.id
    assert exported.info["fp16_check"]["ok"] and exported.info["fp16_check"]["input_size"] == SIZE
    fp32 = MeasureSettings(input_size=SIZE, options=(("precision", "fp32"),))
    exported = plugin.export_model(target, arch, model, fp32, tmp_path)
    assert exported.path.name == f"{arch.id}.onnx" and "fp16_check" not in exported.info
    onnx.checker.check_model(str(exported.path))
    other = Target("cpu", "onnxruntime")
    assert plugin.export_model(other, arch, model, MeasureSettings(input_size=SIZE), tmp_path) is None


def test_agreement_benchmark_reports_every_graph_against_the_limits(capsys):
    from conftest import load_benchmark

    script = load_benchmark("fp16_agreement")
    assert script.main(["--num", "2", "--sizes", "32", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert [row[0] for row in rows] == [EFFICIENTNET_B0.id, sample(1, seed=3)[0].id]
    assert all(row[1] == "32" and 0 < float(row[2]) <= FP16_RELATIVE_TOLERANCE for row in rows)
    assert out.splitlines()[-1].endswith("2 of 2 within the limits")


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [(",", "give at least one input size"), ("32,8", "input size must be within 16..1024, got 8")],
)
def test_agreement_benchmark_refuses_sizes_campaigns_cannot_measure(capsys, sizes, expected):
    from conftest import load_benchmark

    with pytest.raises(SystemExit) as raised:
        load_benchmark("fp16_agreement").main(["--num", "1", "--sizes", sizes])
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"argument --sizes: {expected}")
