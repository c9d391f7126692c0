"""fpga_vitis without a board: output parsers, board files, device matrix, quantization (real, ONNX
Runtime), the compile stage with a stand-in vai_c_xir, and target availability."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fpga_board_server import install_standin, write_board_file

from accelnas.core.model import build_model, calibrate_batchnorm
from accelnas.core.records import ExportedModel, MeasureSettings, Target
from accelnas.core.space import Architecture, sample
from accelnas.plugins.fpga_vitis import plugin
from accelnas.plugins.fpga_vitis.activations import dpu_activations
from accelnas.plugins.fpga_vitis.board import ENV_BOARD, BoardConfig, load_board, parse_board
from accelnas.plugins.fpga_vitis.calibration import calibration_for, load_calibration, random_calibration
from accelnas.plugins.fpga_vitis.devices import PROFILES, family_of, mapping_notes
from accelnas.plugins.fpga_vitis.errors import (
    BoardConfigError,
    CalibrationError,
    CompileError,
    FpgaError,
    QuantizeError,
)
from accelnas.plugins.fpga_vitis.parsers import (
    OutputFormatError,
    failure_reason,
    parse_vai_c_xir,
    parse_xdputil_benchmark,
    parse_xdputil_query,
)
from accelnas.plugins.fpga_vitis.quantize import agreement, choose_quantizer, importable, quantize
from accelnas.plugins.fpga_vitis.transport import remote_command
from accelnas.plugins.fpga_vitis.vai_compile import ENV_TOOL, compile_xmodel, net_name_for

# ---- realistic tool output (formats of Vitis AI 2.x-3.5) -----------------------------------------------
VAI_C_XIR_LOG = """\
[UNILOG][INFO] Compile mode: dpu
[UNILOG][INFO] Debug mode: function
[UNILOG][INFO] Target architecture: DPUCZDX8G_ISA1_B4096
[UNILOG][INFO] Graph name: MBConvNet, with op num: 562
[UNILOG][INFO] Begin to compile...
[UNILOG][WARNING] xir::Op{name = MBConvNet__blocks_1_SiLU_act__ret_5, type = silu} has been assigned to CPU: \
[DPU does not support silu].
[UNILOG][WARNING] xir::Op{name = MBConvNet__blocks_1_SiLU_act__ret_5_sink_transpose_0, type = transpose} \
has been assigned to CPU.
[UNILOG][WARNING] xir::Op{name = MBConvNet__blocks_2_SiLU_act__ret_9, type = silu} has been assigned to CPU: \
[DPU does not support silu].
[UNILOG][WARNING] xir::Op{name = MBConvNet__blocks_1_SiLU_act__ret_5, type = silu} has been assigned to CPU: \
[DPU does not support silu].
I20231117 11:22:30.848696 105724 PartitionPass.cpp:5648] xir::Op{name = output_, type = fix2float} is not \
supported by current target. Target name: DPUCZDX8G_ISA1_B4096, target type: DPUCZDX8G. Assign it to CPU.
\x1b[32m[UNILOG][INFO] Total device subgraph number 9, DPU subgraph number 3\x1b[0m
[UNILOG][INFO] Compile done.
[UNILOG][INFO] The meta json is saved to "/workspace/out/meta.json"
[UNILOG][INFO] The compiled xmodel is saved to "/workspace/out/anb_net.xmodel"
[UNILOG][INFO] The compiled xmodel's md5sum is 8B549308BCEA5FF04E6E63D61635E02B, and has been saved to \
"/workspace/out/md5sum.txt"
"""

XDPUTIL_BENCHMARK_LOG = """\
WARNING: Logging before InitGoogleLogging() is written to STDERR
I0118 18:16:59.260425  1351 test_dpu_runner_mt.cpp:475] shuffle results for batch...
I0118 18:16:59.262668  1351 performance_test.hpp:73] 0% ...
I0118 18:17:05.262815  1351 performance_test.hpp:76] 10% ...
I0118 18:17:59.264187  1351 performance_test.hpp:76] 100% ...
I0118 18:17:59.264250  1351 performance_test.hpp:79] stop and waiting for all threads terminated....
I0118 18:17:59.264602  1351 performance_test.hpp:85] thread-0 processes 40750 frames
I0118 18:17:59.264602  1351 performance_test.hpp:85] thread-1 processes 40751 frames
I0118 18:17:59.264636  1351 performance_test.hpp:93] it takes 369 us for shutdown
I0118 18:17:59.264652  1351 performance_test.hpp:94] FPS= 1358.31 number_of_frames= 81501 time= 60.002 seconds.
I0118 18:17:59.264685  1351 performance_test.hpp:96] BYEBYE
Test PASS.
"""

FINGERPRINT_FAILURE = """\
WARNING: Logging before InitGoogleLogging() is written to STDERR
W1009 22:12:43.531095  2841 dpu_runner_base_imp.cpp:676] CHECK fingerprint fail ! model_fingerprint \
0x101000016010407 dpu_fingerprint 0x101000056010407
F1009 22:12:43.531231  2841 dpu_runner_base_imp.cpp:648] fingerprint check failure.
*** Check failure stack trace: ***
/usr/bin/xdputil: line 20:  2859 Aborted (core dumped) /usr/bin/python3 -m xdputil $*
"""

XDPUTIL_QUERY_LOG = """\
WARNING: Logging before InitGoogleLogging() is written to STDERR
E0124 21:15:15.030138  9836 xdputil_query.cpp:182] Unsupported platform fingerprint: 0, cu_idx: 1
{
    "DPU IP Spec":{"DPU Core Count":2, "IP version":"v4.0.0", "regmap":"1to1 version"},
    "VAI Version":{
        "libvart-runner.so":"Xilinx vart-runner Version: 2.5.0-  2022-07-20-17:13:58 ",
        "libxir.so":"Xilinx xir Version: xir- 2022-07-20-17:06:45",
        "target_factory":"target-factory.2.5.0 d02dcb6041663dbc7ecbc0c6af9fafa087a789de"
    },
    "kernels":[
        {"DPU Arch":"DPUCZDX8G_ISA1_B3136", "DPU Frequency (MHz)":300, "cu_idx":0,
         "fingerprint":"0x101000016010406", "name":"DPU Core 0"},
        {"DPU Arch":"", "cu_idx":1, "fingerprint":"0x0", "name":"DPU Core 1"}
    ]
}
"""


def test_vai_c_xir_parser_counts_subgraphs_and_cpu_fallback_ops():
    report = parse_vai_c_xir(VAI_C_XIR_LOG)
    # 9 = the input ("user") subgraph + 3 DPU + 5 CPU subgraphs
    assert (report.total_subgraphs, report.dpu_subgraphs, report.cpu_subgraphs) == (9, 3, 5)
    one = parse_vai_c_xir("[UNILOG][INFO] Total device subgraph number 3, DPU subgraph number 1")
    assert one.cpu_subgraphs == 1
    assert report.target == "DPUCZDX8G_ISA1_B4096"
    assert (report.graph_name, report.op_count) == ("MBConvNet", 562)
    assert report.xmodel_path == "/workspace/out/anb_net.xmodel"
    assert report.md5 == "8b549308bcea5ff04e6e63d61635e02b"
    # the repeated warning is counted once; both message forms are recognised
    assert [op["type"] for op in report.cpu_ops] == ["silu", "transpose", "silu", "fix2float"]
    assert report.cpu_op_types == {"silu": 2, "transpose": 1, "fix2float": 1}
    assert report.cpu_ops[0]["reason"] == "DPU does not support silu"
    assert report.to_dict()["cpu_fallback_ops"] == 4 and not report.errors


def test_vai_c_xir_parser_is_tolerant_and_keeps_fatal_errors():
    report = parse_vai_c_xir("garbage\n\n[UNILOG][FATAL][XCOM_OP_NOT_SUPPORT] type: hard-sigmoid\n")
    assert report.dpu_subgraphs is None and report.cpu_ops == []
    assert report.errors == ["[XCOM_OP_NOT_SUPPORT] type: hard-sigmoid"]
    glog = "I0101 00:00:00.0 1 compile_pass_manager.cpp:557] Total device subgraph number 3, DPU subgraph number 1"
    assert parse_vai_c_xir(glog).dpu_subgraphs == 1


def test_xdputil_benchmark_parser():
    run = parse_xdputil_benchmark(XDPUTIL_BENCHMARK_LOG)
    assert run.fps == pytest.approx(1358.31) and run.frames == 81501 and run.seconds == pytest.approx(60.002)
    assert run.thread_frames == [40750, 40751] and run.passed
    assert not parse_xdputil_benchmark(XDPUTIL_BENCHMARK_LOG.replace("Test PASS.", "Test Failed!!!")).passed
    assert parse_xdputil_benchmark("FPS=2.5e3 number_of_frames= 5000 time= 2 seconds.").fps == 2500
    with pytest.raises(OutputFormatError, match="CHECK fingerprint fail ! model_fingerprint 0x101000016010407"):
        parse_xdputil_benchmark(FINGERPRINT_FAILURE)
    assert failure_reason(FINGERPRINT_FAILURE).startswith("CHECK fingerprint fail")
    with pytest.raises(OutputFormatError, match="no 'FPS=' summary"):
        parse_xdputil_benchmark("Test PASS.")


def test_xdputil_query_parser():
    q = parse_xdputil_query(XDPUTIL_QUERY_LOG)
    assert q["dpu_arch"] == ["DPUCZDX8G_ISA1_B3136"] and q["fingerprints"] == ["0x101000016010406"]
    assert q["dpu_cores"] == 1 and q["dpu_frequency_mhz"] == [300] and q["ip_version"] == "v4.0.0"
    assert q["vart"].startswith("Xilinx vart-runner Version: 2.5.0")
    with pytest.raises(OutputFormatError):
        parse_xdputil_query("E0124 no device found\n")


# ---- board files -------------------------------------------------------------------------------------------
def test_board_entries_take_their_targets_defaults(tmp_path, monkeypatch):
    path = write_board_file(tmp_path / "b.yaml", {"zcu102": {"host": "10.0.0.2"}, "vck190": {"host": "10.0.0.3"}})
    monkeypatch.setenv(ENV_BOARD, str(path))
    zcu, vck = load_board("zcu102"), load_board("vck190")
    assert (zcu.batch, zcu.throughput_threads, zcu.latency_threads) == (1, 5, 1)
    assert (vck.batch, vck.throughput_threads, vck.latency_threads) == (6, 6, 1)
    assert zcu.dpu == "DPUCZDX8G_ISA1_B4096" and zcu.arch.endswith("DPUCZDX8G/ZCU102/arch.json")
    assert vck.arch.endswith("DPUCVDX8G/VCK190/arch.json") and zcu.host_key_policy == "strict"
    # the measurement option wins over the environment variable
    other = write_board_file(tmp_path / "o.yaml", {"zcu102": {"host": "h", "port": 2222}})
    chosen = load_board("zcu102", MeasureSettings(options=(("fpga_board", str(other)),)))
    assert (chosen.host, chosen.port) == ("h", 2222)
    with pytest.raises(BoardConfigError, match="no 'dpu' entry"):
        load_board("dpu")


def test_a_board_option_with_another_dpu_batch_is_refused_before_a_campaign(tmp_path, monkeypatch):
    from accelnas.core.errors import AccelnasError
    from accelnas.core.plugins import load_registry

    def entry(host: str, batch: int) -> dict:  # an Alveo DPU: its name does not say its batch
        return {"dpu": {"host": host, "arch": "/a.json", "dpu": "DPUCAHX8H_ISA2_DWC", "batch": batch}}

    monkeypatch.setenv(ENV_BOARD, str(write_board_file(tmp_path / "b.yaml", entry("h", 1))))
    target = load_registry(["fpga_vitis"], use_env=False).target("fpga/dpu", require_available=False)
    assert (target.default_batch_size, target.latency_batch_size) == (1, 1)
    same = write_board_file(tmp_path / "same.yaml", entry("other", 1))
    target.check_options(MeasureSettings(options=(("fpga_board", str(same)),)))  # another host, same batch: fine
    other = write_board_file(tmp_path / "o.yaml", entry("h", 2))
    with pytest.raises(AccelnasError, match="runs fpga/dpu at DPU batch 2, but the target is listed at batch 1"):
        target.check_options(MeasureSettings(options=(("fpga_board", str(other)),)))


def test_the_dpu_batch_follows_the_dpu_name_and_the_arch_json(tmp_path, monkeypatch):
    """A VCK190 with a C32B3 DPU runs batch 3: its entry's default batch follows the name, a batch that
    contradicts the name or the arch.json's target is refused before a campaign, not after each compile."""
    from accelnas.core.errors import AccelnasError
    from accelnas.core.plugins import load_registry

    def use(entry: dict) -> Target:
        monkeypatch.setenv(ENV_BOARD, str(write_board_file(tmp_path / "b.yaml", {"vck190": entry})))
        return load_registry(["fpga_vitis"], use_env=False).target("fpga/vck190", require_available=False)

    b3 = _arch_json(tmp_path / "b3.json", "DPUCVDX8G_ISA3_C32B3")
    target = use({"host": "h", "dpu": "DPUCVDX8G_ISA3_C32B3", "arch": str(b3)})
    assert target.default_batch_size == 3 and load_board("vck190").batch == 3
    target.check_options(MeasureSettings())
    refused = use({"host": "h", "dpu": "DPUCVDX8G_ISA3_C32B3", "batch": 6})
    assert not refused.available and "vck190.batch is 6, but DPU DPUCVDX8G_ISA3_C32B3 runs batch 3" in refused.reason
    with pytest.raises(BoardConfigError, match=r"vck190\.batch is 6, but DPU DPUCVDX8G_ISA3_C32B3 runs batch 3"):
        load_board("vck190")
    target = use({"host": "h", "arch": str(b3)})  # the default DPU name (C32B6), another arch.json
    assert target.default_batch_size == 6
    with pytest.raises(AccelnasError, match=r"compiled for DPUCVDX8G_ISA3_C32B3 runs batch 3, .* says batch 6"):
        target.check_options(MeasureSettings())
    # fixing 'batch' as that message says: the arch.json, not the profile's default DPU name, is compiled for
    target = use({"host": "h", "arch": str(b3), "batch": 3})
    assert "batch" not in (target.reason or "")
    assert target.default_batch_size == 3 and load_board("vck190").batch == 3
    target.check_options(MeasureSettings())
    assert use({"host": "h", "dpu": "DPUCZDX8G_ISA1_B4096", "arch": "/a.json"}).default_batch_size == 1


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"zcu102": {"port": 22}}, "zcu102.host is required"),
        ({"zcu102": {"host": "h", "port": 70000}}, "port must be within"),
        ({"zcu102": {"host": "h", "port": "22"}}, "port must be int"),
        ({"zcu102": {"host": "h", "runs": True}}, "runs must be int"),
        ({"zcu102": {"host": "h", "hostname": "x"}}, "hostname is not a board setting"),
        ({"zcu102": {"host": "h", "xdputil": ""}}, r"zcu102\.xdputil is empty \(leave it out"),
        ({"vck190": {"host": "h", "dpu": "  "}}, r"vck190\.dpu is empty"),
        ({"zcu102": {"host": "h", "host_key_policy": "yes"}}, "host_key_policy must be one of"),
        ({"zcu102": {"host": "h", "runs": 5, "max_runs": 2}}, "max_runs must be >= runs"),
        ({"zcu102": {"host": "h", "workdir": "/"}}, "workdir must be an absolute directory"),
        (
            {"zcu102": {"host": "h", "run_seconds": 60, "command_timeout_s": 30}},
            r"command_timeout_s \(30\) must exceed",
        ),
        ({"zcu102": {"host": "h", "command_timeout_s": 0}}, r"command_timeout_s \(0\) must exceed run_seconds \(10\)"),
        ({"kv260": {"host": "h"}}, "unknown target 'kv260'"),
        ({"dpu": {"host": "h"}}, "needs 'arch'"),
        ({"zcu102": "10.0.0.2"}, "must be a mapping"),
    ],
)
def test_malformed_board_entries_say_what_is_wrong(tmp_path, monkeypatch, entries, message):
    monkeypatch.setenv(ENV_BOARD, str(write_board_file(tmp_path / "b.yaml", entries)))
    with pytest.raises(BoardConfigError, match=message):
        load_board(next(iter(entries)))


def test_unreadable_board_files(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_BOARD, raising=False)
    with pytest.raises(BoardConfigError, match=f"set {ENV_BOARD}"):
        load_board("zcu102")
    monkeypatch.setenv(ENV_BOARD, str(tmp_path / "missing.yaml"))
    with pytest.raises(BoardConfigError, match="does not exist"):
        load_board("zcu102")
    bad = tmp_path / "bad.yaml"
    bad.write_text("zcu102: {host: [\n", encoding="utf-8")
    monkeypatch.setenv(ENV_BOARD, str(bad))
    with pytest.raises(BoardConfigError, match="not valid YAML"):
        load_board("zcu102")


def test_board_files_read_exponents_as_numbers_and_refuse_a_key_given_twice(tmp_path, monkeypatch):
    path = tmp_path / "b.yaml"
    monkeypatch.setenv(ENV_BOARD, str(path))
    path.write_text("zcu102:\n  host: h\n  run_seconds: 1e1\n  command_timeout_s: 6e1\n", encoding="utf-8")
    board = load_board("zcu102")
    assert (board.run_seconds, board.command_timeout_s) == (10.0, 60.0)
    path.write_text("zcu102:\n  host: h\n  port: 2222\n  port: 22\n", encoding="utf-8")  # which one was meant?
    with pytest.raises(BoardConfigError, match=r"not valid YAML: key 'port' given twice \(line 4\)"):
        load_board("zcu102")


def test_every_board_field_is_validated():
    fields = {f.name for f in dataclasses.fields(BoardConfig)} - {"name"}
    from accelnas.plugins.fpga_vitis.board import _FIELD_TYPES

    assert set(_FIELD_TYPES) == fields


def test_remote_benchmarks_hold_the_board_lock_and_may_use_sudo():
    command = remote_command(["xdputil", "query"], kill_after=5, sudo=True, lock="/tmp/l k")
    assert shlex.split(command) == ["flock", "/tmp/l k", "sudo", "-n", "timeout", "-s", "KILL", "5", "xdputil", "query"]


def test_remote_commands_quote_user_data():
    hostile = "/tmp/my boards/$(touch pwned); rm -rf ~"
    argv = ["xdputil", "benchmark", f"{hostile}/net.xmodel", "-i", "-1", "5"]
    line = remote_command(argv, env={"SLEEP_MS": "2000"}, kill_after=12.2)
    assert shlex.split(line) == ["timeout", "-s", "KILL", "13", "env", "SLEEP_MS=2000", *argv]
    assert shlex.split(remote_command(["uname", "-a"])) == ["uname", "-a"]


# ---- device matrix -----------------------------------------------------------------------------------------
def test_se_on_dpus_without_hard_sigmoid():
    with_se = Architecture.from_string("4511-6521-4530-6320-1530-4311-4321")
    without_se = Architecture.from_string("4510-6520-4530-6320-1530-4310-4320")
    assert family_of("DPUCAHX8H_ISA2") is not None and not family_of("DPUCAHX8H_ISA2").hard_sigmoid
    notes = mapping_notes(with_se, "DPUCAHX8H_ISA2_DWC")
    assert len(notes) == 1 and "no hard-sigmoid" in notes[0] and "1, 2, 6, 7" in notes[0]
    assert mapping_notes(without_se, "DPUCAHX8H_ISA2_DWC") == []
    assert mapping_notes(with_se, PROFILES["zcu102"].dpu) == mapping_notes(with_se, PROFILES["vck190"].dpu) == []
    assert mapping_notes(with_se, "DPUCUNKNOWN") == []


# ---- quantization ------------------------------------------------------------------------------------------
def test_calibration_images(tmp_path):
    good = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float64)
    np.save(tmp_path / "good.npy", good)
    loaded = load_calibration(tmp_path / "good.npy", 32)
    assert loaded.dtype == np.float32 and loaded.shape == (3, 3, 32, 32)
    np.save(tmp_path / "nhwc.npy", good.transpose(0, 2, 3, 1))
    with pytest.raises(CalibrationError, match="NCHW"):
        load_calibration(tmp_path / "nhwc.npy", 32)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CalibrationError, match=r"not a numeric \.npy"):
        load_calibration(tmp_path / "objects.npy", 32)
    bad = good.copy()
    bad[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(CalibrationError, match="NaN"):
        load_calibration(tmp_path / "nan.npy", 32)
    assert np.array_equal(random_calibration(32, 2), random_calibration(32, 2))
    images, info = calibration_for(
        MeasureSettings(input_size=32, options=(("fpga_calibration", str(tmp_path / "good.npy")),))
    )
    assert images.shape[0] == 3 and info["count"] == 3
    with pytest.raises(CalibrationError, match="positive integer"):
        calibration_for(MeasureSettings(input_size=32, options=(("fpga_calibration_images", 0),)))


def test_agreement_metrics():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 10))
    same = agreement(logits, logits)
    assert same["cosine_min"] == pytest.approx(1.0) and same["top1_agreement"] == 1.0 and same["max_abs_diff"] == 0
    noisy = agreement(logits, logits + rng.normal(0, 0.5, logits.shape))
    assert noisy["cosine_mean"] < 1.0 and noisy["max_abs_diff"] > 0
    assert agreement(logits, -logits)["cosine_mean"] == pytest.approx(-1.0)


def test_dpu_activations_swap_silu_and_sigmoid():
    import torch

    arch = Architecture.from_string("4511-6521-4530-6320-1530-4311-4321")
    model = calibrate_batchnorm(build_model(arch), 32)
    silu = sum(isinstance(m, torch.nn.SiLU) for m in model.modules())
    sigmoid = sum(isinstance(m, torch.nn.Sigmoid) for m in model.modules())
    swapped, info = dpu_activations(model, 32)
    assert info["swapped"] == {"SiLU->Hardswish": silu, "Sigmoid->Hardsigmoid": sigmoid} and sigmoid > 0
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.Sigmoid)) for m in swapped.modules())
    assert any(isinstance(m, torch.nn.SiLU) for m in model.modules())  # the original is untouched
    with torch.no_grad():
        assert torch.isfinite(swapped(torch.randn(2, 3, 32, 32))).all()
    assert dpu_activations(model, 32, "native")[0] is model


@pytest.mark.skipif(importable("vai_q_pytorch") or importable("vai_q_onnx"), reason="Vitis AI quantizer present")
def test_quantizer_choice_without_vitis_ai():
    assert choose_quantizer("auto") == "onnxruntime"
    with pytest.raises(QuantizeError, match="not importable"):
        choose_quantizer("vai_q_pytorch")
    with pytest.raises(QuantizeError, match="must be auto or one of"):
        choose_quantizer("tensorrt")


def _zcu102() -> Target:
    return Target(device="fpga", backend="zcu102", kind="fpga", default_batch_size=1, plugin="fpga_vitis")


@pytest.mark.skipif(importable("vai_q_pytorch"), reason="vai_q_pytorch present: export produces an xmodel")
def test_export_quantizes_for_real_and_compile_refuses_onnx(tmp_path):
    arch = sample(1, seed=5)[0]
    model = calibrate_batchnorm(build_model(arch), 32)
    settings = MeasureSettings(
        input_size=32, options=(("fpga_calibration_images", 4), ("fpga_quantizer", "onnxruntime"))
    )
    exported = plugin.export_model(_zcu102(), arch, model, settings, tmp_path)
    assert exported.format == "onnx-qdq" and exported.path.is_file()
    q = exported.info["quantization"]
    assert q["quantizer"] == "onnxruntime" and q["calibration"] == {"source": "random-normal, seed 0", "count": 4}
    agree = q["agreement"]
    assert agree["images"] == 4 and -1 <= agree["cosine_min"] <= agree["cosine_mean"] <= 1
    assert 0 <= agree["top1_agreement"] <= 1 and agree["max_abs_diff"] >= 0
    assert exported.info["activations"]["swapped"]["SiLU->Hardswish"] > 0
    graph = onnx.load(str(exported.path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {i.name: i for i in graph.initializer}
    weight_scales = [
        onnx.numpy_helper.to_array(inits[n.input[1]])
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert weight_scales and max(s.size for s in weight_scales) > 1  # per-channel int8 weights
    with pytest.raises(CompileError, match=r"quantized by onnxruntime .*use fpga_quantizer=vai_q_pytorch"):
        plugin.compile(_zcu102(), exported, settings, tmp_path)
    other = Target(device="cpu", backend="onnxruntime")
    assert plugin.export_model(other, arch, model, settings, tmp_path) is None


def test_quantize_rejects_a_missing_onnx_export(tmp_path):
    with pytest.raises(QuantizeError, match="ONNX export"):
        quantize(None, random_calibration(32, 2), tmp_path, quantizer="onnxruntime")


# ---- compile stage with a stand-in vai_c_xir (test fixture) -------------------------------------------------
@pytest.fixture
def standin_compiler(tmp_path, monkeypatch) -> Path:
    tool = install_standin("vai_c_xir", tmp_path / "bin")
    monkeypatch.setenv(ENV_TOOL, str(tool))
    return tool


def _arch_json(path: Path, target: str) -> Path:
    path.write_text(json.dumps({"target": target}), encoding="utf-8")
    return path


def _quantized(path: Path, **content) -> Path:
    path.write_text(json.dumps({"frame_ms": 2.0, **content}), encoding="utf-8")
    return path


def test_compile_runs_vai_c_xir_and_records_the_partition(tmp_path, standin_compiler):
    arch = _arch_json(tmp_path / "arch.json", "DPUCAHX8H_ISA2_DWC")
    q = _quantized(tmp_path / "MBConvNet_int.xmodel", se_stages=[1, 6])
    name = net_name_for("4511-6521-4530-6320-1530-4311-4321")
    result = compile_xmodel(q, arch, name, tmp_path / "out", timeout=60)
    assert result.xmodel == tmp_path / "out" / f"{name}.xmodel" and result.xmodel.is_file()
    assert result.command[1:] == [
        "--xmodel",
        str(q),
        "--arch",
        str(arch),
        "--net_name",
        name,
        "--output_dir",
        str(tmp_path / "out"),
    ]
    info = result.info()
    assert info["dpu_subgraphs"] == 3 and info["cpu_fallback_ops"] == 2 and info["cpu_op_types"] == {"hard-sigmoid": 2}
    assert info["compiled_target"] == "DPUCAHX8H_ISA2_DWC" and len(info["xmodel_md5"]) == 32
    assert result.log_path.read_text(encoding="utf-8").count("[UNILOG]") >= 5
    plain = compile_xmodel(q, _arch_json(tmp_path / "z.json", "DPUCZDX8G_ISA1_B4096"), "n", tmp_path / "o2", timeout=60)
    assert plain.info()["cpu_fallback_ops"] == 0 and plain.info()["dpu_subgraphs"] == 1


def test_compile_failures_are_clear(tmp_path, standin_compiler, monkeypatch):
    arch = _arch_json(tmp_path / "arch.json", "DPUCZDX8G_ISA1_B4096")
    q = _quantized(tmp_path / "q.xmodel", unsupported=True)
    with pytest.raises(CompileError, match=r"exit code 1: .*hard-sigmoid is not supported"):
        compile_xmodel(q, arch, "net", tmp_path / "out", timeout=60)
    with pytest.raises(CompileError, match="does not exist"):
        compile_xmodel(q, tmp_path / "none.json", "net", tmp_path / "out", timeout=60)
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(CompileError, match="not valid JSON"):
        compile_xmodel(q, tmp_path / "broken.json", "net", tmp_path / "out", timeout=60)
    with pytest.raises(CompileError, match="invalid network name"):
        compile_xmodel(q, arch, "net; rm -rf /", tmp_path / "out", timeout=60)
    hang = tmp_path / "bin" / "hang"
    hang.write_text("#!/bin/sh\nsleep 60\n", encoding="utf-8")
    hang.chmod(0o755)
    with pytest.raises(CompileError, match=r"timed out after 0\.5 s"):
        compile_xmodel(_quantized(tmp_path / "ok.xmodel"), arch, "net", tmp_path / "out", timeout=0.5, tool=str(hang))
    monkeypatch.setenv(ENV_TOOL, str(tmp_path / "no-such-tool"))
    with pytest.raises(CompileError, match=f"{ENV_TOOL}=.*no-such-tool is not an executable file"):
        compile_xmodel(q, arch, "net", tmp_path / "out", timeout=60)
    monkeypatch.delenv(ENV_TOOL)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CompileError, match=f"vai_c_xir not found .*set {ENV_TOOL}"):
        compile_xmodel(q, arch, "net", tmp_path / "out", timeout=60)


def test_compile_hook_uses_the_board_arch(tmp_path, standin_compiler, monkeypatch):
    arch = _arch_json(tmp_path / "arch.json", "DPUCVDX8G_ISA3_C32B6")
    board = write_board_file(tmp_path / "b.yaml", {"vck190": {"host": "h", "arch": str(arch)}})
    monkeypatch.setenv(ENV_BOARD, str(board))
    target = Target(device="fpga", backend="vck190", kind="fpga", default_batch_size=6)
    exported = ExportedModel(
        format="xmodel", path=_quantized(tmp_path / "q.xmodel", batch=6), info={"net_name": "anb_x", "dpu": "D"}
    )
    compiled = plugin.compile(target, exported, MeasureSettings(), tmp_path)
    assert Path(compiled.handle).name == "anb_x.xmodel"
    assert compiled.info["compiled_target"] == "DPUCVDX8G_ISA3_C32B6" and compiled.info["dpu"] == "D"


def test_targets_list_what_they_need(tmp_path, monkeypatch, standin_compiler):
    from accelnas.core.plugins import load_registry

    monkeypatch.setenv(ENV_BOARD, str(tmp_path / "missing.yaml"))
    targets = load_registry(["fpga_vitis"], use_env=False).targets()
    assert {"fpga/zcu102", "fpga/vck190", "fpga/dpu"} <= set(targets)
    for name in ("fpga/zcu102", "fpga/vck190", "fpga/dpu"):
        t = targets[name]
        assert t.kind == "fpga" and t.plugin == "fpga_vitis" and any(ENV_BOARD in r for r in t.requires)
        if not importable("vai_q_pytorch"):
            assert not t.available and "pytorch_nndct" in t.reason
        assert "missing.yaml does not exist" in t.reason and "vai_c_xir not found" not in t.reason
    assert (targets["fpga/zcu102"].default_batch_size, targets["fpga/vck190"].default_batch_size) == (1, 6)

    # with every piece present the target is available and takes its batch from the board entry
    arch = _arch_json(tmp_path / "arch.json", "DPUCAHX8H_ISA2_DWC")
    entries = {"dpu": {"host": "h", "arch": str(arch), "dpu": "DPUCAHX8H_ISA2_DWC", "batch": 3}}
    monkeypatch.setenv(ENV_BOARD, str(write_board_file(tmp_path / "b.yaml", entries)))
    monkeypatch.setattr(plugin.quantize, "importable", lambda name: True)
    found: list[Target] = []
    plugin.register_targets(found.append)
    dpu = next(t for t in found if t.backend == "dpu")
    assert dpu.available and dpu.reason is None and dpu.default_batch_size == 3
    assert "DPUCAHX8H_ISA2_DWC" in dpu.description
    zcu = next(t for t in found if t.backend == "zcu102")
    assert not zcu.available and "no 'zcu102' entry" in zcu.reason


WITHOUT_ASYNCSSH = """
import sys
sys.modules["asyncssh"] = None  # as where accelnas was installed without its [fpga] extra
from accelnas.core.plugins import load_registry
import accelnas.plugins.fpga_vitis.plugin as plugin
plugin.package_version = lambda name: None if name == "asyncssh" else "1"
print(load_registry(["fpga_vitis"], use_env=False).target("fpga/zcu102", require_available=False).reason)
"""


def test_without_asyncssh_the_targets_are_listed_with_the_reason():
    out = subprocess.run([sys.executable, "-c", WITHOUT_ASYNCSSH], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "asyncssh not installed (pip install 'accelnas[fpga]')" in out.stdout


def test_tool_paths_that_name_no_executable_make_the_targets_unavailable(tmp_path, monkeypatch, standin_compiler):
    """A mistyped ACCELNAS_VAI_PYTHON would fail every architecture at quantization, and a mistyped
    ACCELNAS_VAI_C_XIR is not 'not set': both are named in the listing instead."""
    from accelnas.plugins.fpga_vitis.quantize import ENV_PYTHON

    arch = _arch_json(tmp_path / "arch.json", "DPUCZDX8G_ISA1_B4096")
    monkeypatch.setenv(
        ENV_BOARD, str(write_board_file(tmp_path / "b.yaml", {"zcu102": {"host": "h", "arch": str(arch)}}))
    )
    monkeypatch.setattr(plugin.quantize, "importable", lambda name: True)  # even with pytorch_nndct in-process
    monkeypatch.setenv(ENV_PYTHON, str(tmp_path / "no-such-python"))

    def zcu102() -> Target:
        found: list[Target] = []
        plugin.register_targets(found.append)
        return next(t for t in found if t.backend == "zcu102")

    t = zcu102()
    assert not t.available and f"{ENV_PYTHON}={tmp_path / 'no-such-python'} is not an executable Python" in t.reason
    monkeypatch.setenv(ENV_PYTHON, sys.executable)
    assert zcu102().available
    monkeypatch.setenv(ENV_TOOL, str(tmp_path / "bin" / "vai_c_xir_typo"))
    t = zcu102()
    assert not t.available and t.reason == f"{ENV_TOOL}={tmp_path / 'bin' / 'vai_c_xir_typo'} is not an executable file"


def test_the_example_board_file_is_valid():
    from accelnas.plugins.fpga_vitis.board import read_board_file

    path = Path(plugin.__file__).with_name("boards.example.yaml")
    boards = {name: parse_board(name, entry, path) for name, entry in read_board_file(path).items()}
    assert set(boards) == set(PROFILES)
    for name, board in boards.items():
        defaults = PROFILES[name]
        if name != "dpu":
            assert (board.dpu, board.arch, board.batch) == (defaults.dpu, defaults.arch, defaults.batch)
            assert board.throughput_threads == defaults.throughput_threads
    assert boards["dpu"].host_key_policy == "accept-new" and boards["dpu"].arch.endswith("KV260/arch.json")


def test_quantizer_target_comes_from_the_arch_json(tmp_path, monkeypatch):
    arch = _arch_json(tmp_path / "arch.json", "DPUCZDX8G_ISA1_B3136")
    monkeypatch.setenv(
        ENV_BOARD, str(write_board_file(tmp_path / "b.yaml", {"zcu102": {"host": "h", "arch": str(arch)}}))
    )
    assert plugin._dpu("zcu102", MeasureSettings()) == "DPUCZDX8G_ISA1_B3136"
    arch.write_text('{"fingerprint": "0x101000056010407"}', encoding="utf-8")  # vai_q_pytorch takes one too
    assert plugin._dpu("zcu102", MeasureSettings()) == "0x101000056010407"
    monkeypatch.setenv(ENV_BOARD, str(write_board_file(tmp_path / "c.yaml", {"zcu102": {"host": "h"}})))
    assert plugin._dpu("zcu102", MeasureSettings()) == "DPUCZDX8G_ISA1_B4096"
    with pytest.raises(FpgaError, match="fpga_activations must be one of"):
        dpu_activations(object(), 32, "soft")


def test_fpga_targets_key_their_results_by_the_xdputil_job_environment():
    from accelnas.core.plugins import load_registry

    target = load_registry(["fpga_vitis"], use_env=False).target("fpga/zcu102", require_available=False)
    assert target.protocol == "xdputil COPY_INPUT=1 COPY_OUTPUT=1 ENABLE_MEMCMP=0"
    settings = MeasureSettings(input_size=224)
    assert settings.identity(target)["protocol"] == target.protocol


def test_dpu_identity_compares_fingerprints_and_whole_name_tokens():
    from accelnas.plugins.fpga_vitis.board import compiled_batch
    from accelnas.plugins.fpga_vitis.devices import split_target, target_batch
    from accelnas.plugins.fpga_vitis.errors import RemoteCommandError
    from accelnas.plugins.fpga_vitis.measure import check_dpu

    board = BoardConfig(name="zcu102", host="h")
    ident = {"xdputil_query": {"dpu_arch": ["DPUCZDX8G_ISA1_B4096"], "fingerprints": ["0x101000056010407"]}}
    assert split_target("DPUCZDX8G_ISA1_B4096_0101000016010407") == ("DPUCZDX8G_ISA1_B4096", 0x101000016010407)
    with pytest.raises(RemoteCommandError, match="compiled for fingerprint 0x101000016010407"):
        check_dpu(ident, {"compiled_target": "DPUCZDX8G_ISA1_B4096_0101000016010407"}, board)
    check_dpu(ident, {"compiled_target": "DPUCZDX8G_ISA1_B4096_0101000056010407"}, board)
    with pytest.raises(RemoteCommandError, match="compiled for fingerprint 0x101000016010407"):  # from the arch.json
        check_dpu(ident, {"compiled_target": "DPUCZDX8G", "arch": {"fingerprint": "0x101000016010407"}}, board)
    no_prints = {"xdputil_query": {"dpu_arch": ["DPUCZDX8G_ISA1_B1024"], "fingerprints": []}}
    with pytest.raises(RemoteCommandError, match=r"compiled for DPUCZDX8G_ISA1_B102$"):
        check_dpu(no_prints, {"compiled_target": "DPUCZDX8G_ISA1_B102"}, board)
    check_dpu(no_prints, {"compiled_target": "DPUCZDX8G_ISA1_B1024"}, board)
    assert [target_batch(t) for t in ("DPUCVDX8G_ISA3_C32B6", "DPUCZDX8G_ISA1_B4096_0101000056010407")] == [6, 1]
    assert target_batch("DPUCV2DX8G_ISA1_C20B14") == 14 and target_batch("DPUCAHX8H_ISA2_DWC") is None
    vck = BoardConfig(name="vck190", host="h", batch=6)
    assert compiled_batch({"compiled_target": "DPUCVDX8G_ISA3_C32B6"}, vck) == (6, "compile target")
    assert compiled_batch({"compiled_target": "DPUCAHX8H_ISA2_DWC"}, vck) == (6, "board entry")
    with pytest.raises(BoardConfigError, match="runs batch 1, but board vck190's entry says batch 6"):
        compiled_batch({"compiled_target": "DPUCZDX8G_ISA1_B4096"}, vck)


def test_campaign_options_are_checked_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_BOARD, raising=False)
    monkeypatch.delenv("ACCELNAS_FPGA_CALIBRATION", raising=False)
    check = plugin.check_option_values
    with pytest.raises(BoardConfigError, match="DPU's batch 1; batch size 16 cannot apply"):
        check(MeasureSettings(batch_size=16), backend="zcu102", listed_batch=1)
    missing = MeasureSettings(options=(("fpga_calibration", str(tmp_path / "none.npy")),))
    vai_q = MeasureSettings(options=(("fpga_quantizer", "vai_q_pytorch"),))
    monkeypatch.delenv("ACCELNAS_VAI_PYTHON", raising=False)
    monkeypatch.setenv("ACCELNAS_VAI_C_XIR", str(tmp_path / "absent"))  # a host that only starts the campaign
    check(missing, backend="zcu102", listed_batch=1)
    check(vai_q, backend="zcu102", listed_batch=1)
    for onnx_quantizer in ("vai_q_onnx", "onnxruntime"):  # a campaign of them would only fail at compile
        with pytest.raises(QuantizeError, match=f"{onnx_quantizer} makes a QDQ ONNX model, which no DPU compiler"):
            check(MeasureSettings(options=(("fpga_quantizer", onnx_quantizer),)), backend="zcu102", listed_batch=1)
    monkeypatch.setenv("ACCELNAS_VAI_C_XIR", str(install_standin("vai_c_xir", tmp_path / "bin")))  # measures here
    with pytest.raises(CalibrationError, match=r"none\.npy does not exist"):
        check(missing, backend="zcu102", listed_batch=1)
    if not importable("vai_q_pytorch"):
        with pytest.raises(QuantizeError, match=r"not importable here .*ACCELNAS_VAI_PYTHON is not set"):
            check(vai_q, backend="zcu102", listed_batch=1)
    np.save(tmp_path / "hwc.npy", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(CalibrationError, match="NCHW"):
        check(
            MeasureSettings(input_size=32, options=(("fpga_calibration", str(tmp_path / "hwc.npy")),)),
            backend="zcu102",
            listed_batch=1,
        )
