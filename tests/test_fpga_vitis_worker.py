"""vai_q_pytorch through ACCELNAS_VAI_PYTHON: the standalone network builder shared with the core, and
the worker run end to end with this interpreter and a stand-in pytorch_nndct (tests/fpga_board_nndct)."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fpga_board_server import install_standin

from accelnas.core import _torch_blocks
from accelnas.core.model import build_model, calibrate_batchnorm, network_description
from accelnas.core.records import MeasureSettings, Target
from accelnas.core.space import sample
from accelnas.plugins.fpga_vitis import plugin, quantize
from accelnas.plugins.fpga_vitis.activations import dpu_activations
from accelnas.plugins.fpga_vitis.errors import QuantizeError
from accelnas.plugins.fpga_vitis.vai_compile import ENV_TOOL

STANDIN_NNDCT = Path(__file__).parent / "fpga_board_nndct"
WORKER_FILES = (Path(_torch_blocks.__file__), quantize.WORKER)
PY37_MODULES = {"__future__", "glob", "importlib", "inspect", "json", "os", "platform", "sys", "traceback", "typing"}


def _standalone_blocks():
    """core/_torch_blocks.py loaded by path, as the worker loads it (not as part of accelnas)."""
    spec = importlib.util.spec_from_file_location("standalone_torch_blocks", _torch_blocks.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", WORKER_FILES, ids=lambda p: p.name)
def test_worker_files_parse_as_python_37_and_import_no_accelnas(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 7))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "accelnas" not in imported
    assert imported <= PY37_MODULES | {"numpy", "torch", "pytorch_nndct"}


def test_the_network_is_built_identically_from_its_plain_description():
    standalone = _standalone_blocks()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for arch in sample(3, seed=11):
        torch.manual_seed(0)
        core = build_model(arch)
        description = json.loads(json.dumps(network_description(arch)))  # through JSON, as the worker reads it
        assert core.description == description and core.architecture == arch
        torch.manual_seed(0)
        other = standalone.build(description)
        core_state, other_state = core.state_dict(), other.state_dict()
        assert list(core_state) == list(other_state)
        assert all(torch.equal(core_state[k], other_state[k]) for k in core_state)
        for mode in ("native", "hard"):
            model, _ = dpu_activations(calibrate_batchnorm(build_model(arch), 32), 32, mode)
            rebuilt = standalone.build(json.loads(json.dumps(model.description)))
            state = {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in model.state_dict().items()}
            rebuilt.load_state_dict(state, strict=True)
            rebuilt.eval()
            assert [type(m).__name__ for m in rebuilt.modules()] == [type(m).__name__ for m in model.modules()]
            with torch.no_grad():
                assert torch.equal(model(x), rebuilt(x))
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        standalone.build(network_description(sample(1, seed=1)[0], activation="gelu"))


def _target() -> Target:
    return Target(device="fpga", backend="zcu102", kind="fpga", default_batch_size=1, plugin="fpga_vitis")


@pytest.fixture
def worker_env(monkeypatch):
    """This interpreter as ACCELNAS_VAI_PYTHON, with the stand-in pytorch_nndct and without accelnas."""
    monkeypatch.setenv(quantize.ENV_PYTHON, sys.executable)
    monkeypatch.setenv("PYTHONPATH", str(STANDIN_NNDCT))
    monkeypatch.delenv("NNDCT_STANDIN_MODE", raising=False)
    return monkeypatch


SETTINGS = MeasureSettings(input_size=32, options=(("fpga_calibration_images", 4), ("fpga_quantizer", "vai_q_pytorch")))


def test_the_worker_quantizes_in_another_python_and_the_xmodel_compiles(tmp_path, worker_env):
    assert quantize.choose_quantizer("auto") == "vai_q_pytorch"
    arch = sample(1, seed=5)[0]
    model = calibrate_batchnorm(build_model(arch), 32)
    exported = plugin.export_model(_target(), arch, model, SETTINGS, tmp_path)
    assert exported.format == "xmodel" and exported.path.name == "MBConvNet_int.xmodel"
    q = exported.info["quantization"]
    assert q["quantizer"] == "vai_q_pytorch" and q["worker"]["interpreter"] == sys.executable
    assert q["worker"]["pytorch_nndct"] == "3.5.0-stand-in" and q["worker"]["torch"] == torch.__version__
    assert q["agreement"]["images"] == 4 and q["agreement"]["cosine_min"] > 0.99
    assert json.loads(exported.path.read_text())["target"] == "DPUCZDX8G_ISA1_B4096"  # target-aware quantizer
    job = tmp_path / "vai_q_job"
    assert json.loads((job / "network.json").read_text())["activation"] == "hardswish"
    with np.load(job / "weights.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(model.state_dict())
    worker_env.setenv(ENV_TOOL, str(install_standin("vai_c_xir", tmp_path / "bin")))
    worker_env.setenv("ACCELNAS_FPGA_BOARD", str(tmp_path / "boards.yaml"))
    arch_json = tmp_path / "arch.json"
    arch_json.write_text(json.dumps({"target": "DPUCZDX8G_ISA1_B4096"}), encoding="utf-8")
    (tmp_path / "boards.yaml").write_text(f"zcu102:\n  host: h\n  arch: {arch_json}\n", encoding="utf-8")
    compiled = plugin.compile(_target(), exported, SETTINGS, tmp_path)
    assert compiled.info["dpu_subgraphs"] == 1 and Path(compiled.handle).is_file()


def test_worker_failures_come_back_as_one_line(tmp_path, worker_env):
    arch = sample(1, seed=6)[0]
    model = calibrate_batchnorm(build_model(arch), 32)
    worker_env.setenv("NNDCT_STANDIN_MODE", "fail")
    with pytest.raises(QuantizeError) as info:
        plugin.export_model(_target(), arch, model, SETTINGS, tmp_path / "a")
    message = str(info.value)
    assert "\n" not in message and message.endswith(
        "RuntimeError: [NNDCT_OP_NOT_SUPPORTED] stand-in refuses this graph"
    )
    assert "Traceback" in (tmp_path / "a" / "vai_q_job" / "worker.log").read_text()
    worker_env.setenv("NNDCT_STANDIN_MODE", "noxmodel")
    with pytest.raises(QuantizeError, match=r"exported no \*_int.xmodel"):
        plugin.export_model(_target(), arch, model, SETTINGS, tmp_path / "b")
    worker_env.delenv("NNDCT_STANDIN_MODE")
    worker_env.setenv("PYTHONPATH", str(tmp_path))  # no pytorch_nndct there
    with pytest.raises(QuantizeError, match="ModuleNotFoundError: No module named 'pytorch_nndct'"):
        plugin.export_model(_target(), arch, model, SETTINGS, tmp_path / "c")
    with pytest.raises(QuantizeError, match="carries no network description"):
        quantize.quantize(torch.nn.Flatten(), np.zeros((1, 3, 4, 4), np.float32), tmp_path / "d")
    worker_env.setenv(quantize.ENV_PYTHON, str(tmp_path / "no-python"))
    with pytest.raises(QuantizeError, match="is not an executable Python"):
        plugin.export_model(_target(), arch, model, SETTINGS, tmp_path / "e")


def test_in_process_quantization_takes_the_workers_steps(tmp_path, monkeypatch):
    """Where pytorch_nndct imports beside accelnas (no ACCELNAS_VAI_PYTHON), the same steps run here."""
    monkeypatch.delenv(quantize.ENV_PYTHON, raising=False)
    monkeypatch.delenv("NNDCT_STANDIN_MODE", raising=False)
    monkeypatch.syspath_prepend(str(STANDIN_NNDCT))  # accelnas is imported already: its shadow there is inert
    for name in [m for m in sys.modules if m == "pytorch_nndct" or m.startswith("pytorch_nndct.")]:
        monkeypatch.delitem(sys.modules, name)
    arch = sample(1, seed=6)[0]
    model = calibrate_batchnorm(build_model(arch), 32)
    exported = plugin.export_model(_target(), arch, model, SETTINGS, tmp_path)
    q = exported.info["quantization"]
    assert exported.path.name == "MBConvNet_int.xmodel" and "worker" not in q
    assert q["agreement"]["images"] == 4 and q["agreement"]["cosine_min"] > 0.99
