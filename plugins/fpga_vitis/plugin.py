"""Hook implementations of the fpga_vitis plugin: Xilinx DPUs through Vitis AI, measured on a remote board.

Targets: ``fpga/zcu102``, ``fpga/vck190`` and ``fpga/dpu`` (any DPU with an arch.json). Per architecture:

* ``export_model``: DPU-friendly activations (:mod:`.activations`), then 8-bit quantization with the
  best quantizer present (:mod:`.quantize`); float-vs-int8 agreement goes into the record.
* ``compile``: ``vai_c_xir`` for the board's arch.json (:mod:`.vai_compile`); DPU subgraphs and
  CPU-fallback ops are recorded, a failure is recorded for that architecture and the campaign goes on.
* ``measure_throughput`` / ``measure_latency``: the xmodel is copied to the board over SSH and timed
  with ``xdputil benchmark`` (:mod:`.measure`).

The board comes from a YAML file (:mod:`.board`) named by ``ACCELNAS_FPGA_BOARD`` (or the measurement
option ``fpga_board``). Without the Vitis AI container or a board the targets are listed as unavailable
with the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from accelnas.core.hookspecs import hookimpl
from accelnas.core.provenance import package_version
from accelnas.core.records import CompiledModel, ExportedModel, Measurement, MeasureSettings, Target
from accelnas.core.space import Architecture
from accelnas.plugins.fpga_vitis import activations, quantize
from accelnas.plugins.fpga_vitis.board import (
    ENV_BOARD,
    OPTION_BOARD,
    BoardConfig,
    board_file,
    compiled_batch,
    load_board,
)
from accelnas.plugins.fpga_vitis.calibration import (
    OPTION_CALIBRATION,
    OPTION_COUNT,
    calibration_count,
    calibration_for,
    calibration_source,
    check_calibration_file,
)
from accelnas.plugins.fpga_vitis.devices import PROFILES, XDPUTIL_JOB_ENV, mapping_notes
from accelnas.plugins.fpga_vitis.errors import BoardConfigError, CompileError, FpgaError, QuantizeError
from accelnas.plugins.fpga_vitis.vai_compile import (
    compile_xmodel,
    find_compiler,
    missing_compiler,
    net_name_for,
    read_arch,
)

DEVICE = "fpga"


def _serves(target: Target) -> bool:
    return target.device == DEVICE and target.backend in PROFILES


def _availability(backend: str) -> tuple[list[str], BoardConfig | None]:
    """What is missing for ``fpga/<backend>`` here, and its board entry when one is configured."""
    problems: list[str] = []
    if find_compiler() is None:
        problems.append(missing_compiler())
    if quantize.worker_python():  # quantization runs there, whatever this Python can import
        try:
            quantize.check_worker_python()
        except QuantizeError as exc:
            problems.append(str(exc))
    elif not quantize.usable("vai_q_pytorch"):
        problems.append(
            f"vai_q_pytorch (pytorch_nndct) not importable and {quantize.ENV_PYTHON} not set: its xmodel is what "
            "vai_c_xir compiles"
        )
    if package_version("asyncssh") is None:
        problems.append("asyncssh not installed (pip install 'accelnas[fpga]')")
    board: BoardConfig | None = None
    try:
        board = load_board(backend)
    except FpgaError as exc:
        problems.append(str(exc))
    arch = board.arch if board else PROFILES[backend].arch
    if arch and not Path(arch).is_file():
        problems.append(f"arch.json {arch} not found")
    return problems, board


OPTION_KEYS = (OPTION_BOARD, activations.OPTION, quantize.OPTION, OPTION_CALIBRATION, OPTION_COUNT)


def check_option_values(
    settings: MeasureSettings, *, backend: str | None = None, listed_batch: int | None = None
) -> None:
    """Refuse option values no measurement could use, before a campaign starts: cheap, local checks only.

    Always: the option values, and ``--batch-size`` against the DPU batch the target was listed with
    (``listed_batch``: results are keyed and checked by it). Where the board file, the SSH key or the
    calibration file exists here, it is read (the key loaded). Where this host has ``vai_c_xir``
    (it measures, not just starts the campaign), a named quantizer must be usable and a named
    calibration file present.
    """
    activations.check_mode(settings.option(activations.OPTION, "hard"))
    requested = quantize.check_requested(settings.option(quantize.OPTION, "auto"))
    if calibration_source(settings) is None:  # a calibration file makes the image count moot
        calibration_count(settings)
    if backend is None or listed_batch is None:
        return
    if settings.batch_size is not None and settings.batch_size != listed_batch:
        raise BoardConfigError(
            f"fpga/{backend} runs at its DPU's batch {listed_batch}; batch size {settings.batch_size} cannot apply"
        )
    if requested in quantize.ONNX_QUANTIZERS:
        raise QuantizeError(
            f"option {quantize.OPTION}={requested} makes a QDQ ONNX model, which no DPU compiler takes: every "
            "measurement would fail at compile; use auto or vai_q_pytorch (quantize.quantize() measures the ONNX "
            "quantizers' agreement outside a campaign)"
        )
    measures_here = find_compiler() is not None
    if measures_here and requested != "auto":
        quantize.choose_quantizer(requested)
    source = calibration_source(settings)
    if source and (measures_here or Path(source).expanduser().is_file()):
        check_calibration_file(Path(source).expanduser(), settings.input_size)
    path = board_file(settings)
    if path is None or not path.is_file():
        return
    board = load_board(backend, settings)
    if board.batch != listed_batch:
        raise BoardConfigError(
            f"board file {path} runs fpga/{backend} at DPU batch {board.batch}, but the target is listed at batch "
            f"{listed_batch} (from {ENV_BOARD} or the {backend} profile): name the same file in {ENV_BOARD}"
        )
    from accelnas.plugins.fpga_vitis.transport import load_client_key  # transport needs asyncssh

    compiled_batch({"compiled_target": _dpu(backend, settings)}, board)  # the arch.json's DPU, where it is here
    if board.key and (measures_here or Path(board.key).is_file()):
        load_client_key(board)


@hookimpl
def register_targets(register: Callable[[Target], None]) -> None:
    for backend, profile in PROFILES.items():
        problems, board = _availability(backend)
        dpu = (board.dpu if board else profile.dpu) or "DPU named in the board entry"
        batch = board.batch if board else profile.batch
        register(
            Target(
                device=DEVICE,
                backend=backend,
                description=f"{profile.title}, {dpu}: Vitis AI int8 xmodel timed with xdputil over SSH",
                kind="fpga",
                default_batch_size=batch,
                latency_batch_size=batch,  # one job of the DPU's batch
                requires=(
                    "Vitis AI container (vai_c_xir, arch.json; vai_q_pytorch in-process or through "
                    f"{quantize.ENV_PYTHON}) for quantize + compile",
                    f"a board YAML with a '{backend}' entry named by {ENV_BOARD}",
                    "asyncssh (pip install 'accelnas[fpga]')",
                ),
                options=OPTION_KEYS,
                check_values=partial(check_option_values, backend=backend, listed_batch=batch),
                protocol="xdputil " + " ".join(f"{k}={v}" for k, v in sorted(XDPUTIL_JOB_ENV.items())),
                available=not problems,
                reason="; ".join(problems) or None,
            )
        )


def _dpu(backend: str, settings: MeasureSettings) -> str:
    """The DPU the model is quantized for: the arch.json's target (or its fingerprint, which
    vai_q_pytorch also takes), else the board entry's or the default."""
    try:
        board = load_board(backend, settings)
    except BoardConfigError:
        return PROFILES[backend].dpu
    if board.arch and Path(board.arch).is_file():
        try:
            arch = read_arch(Path(board.arch))
            return str(arch.get("target") or arch.get("fingerprint") or board.dpu)
        except CompileError:
            return board.dpu
    return board.dpu


PROBE_VALID_S = 60.0  # a board that answered this recently is not probed again before the next model
_answered: dict[tuple[str, int], float] = {}


def _preflight(target: Target, settings: MeasureSettings) -> None:
    """Find board problems before quantize + compile: the key loads and the SSH port answers."""
    from accelnas.plugins.fpga_vitis.transport import load_client_key, probe

    try:
        board = load_board(target.backend, settings)
    except BoardConfigError:
        return  # no board here: quantize and compile alone; measuring names what is missing
    load_client_key(board)
    now = time.monotonic()
    if now - _answered.get((board.host, board.port), -math.inf) < PROBE_VALID_S:
        return
    probe(board)
    _answered[(board.host, board.port)] = now


@hookimpl
def export_model(
    target: Target, architecture: Architecture, model: Any, settings: MeasureSettings, workdir: Path
) -> ExportedModel | None:
    if not _serves(target):
        return None
    from accelnas.plugins.cpu_ort.plugin import export_onnx

    workdir = Path(workdir)
    _preflight(target, settings)
    dpu = _dpu(target.backend, settings)
    mode = settings.option(activations.OPTION, "hard")
    deployable, act_info = activations.dpu_activations(model, settings.input_size, mode)
    images, calibration = calibration_for(settings)
    quantizer = quantize.choose_quantizer(settings.option(quantize.OPTION, "auto"))
    float_onnx = None
    if quantizer != "vai_q_pytorch":
        float_onnx = export_onnx(deployable, workdir / f"{architecture.id}.onnx", settings.input_size)
    result = quantize.quantize(deployable, images, workdir, float_onnx=float_onnx, quantizer=quantizer, dpu=dpu)
    info = {
        "net_name": net_name_for(architecture.id),
        "dpu": dpu,
        "quantization": result.info() | {"calibration": calibration},
        "activations": act_info,
        "mapping_notes": mapping_notes(architecture, dpu),
    }
    return ExportedModel(format=result.format, path=result.path, input_name="input", info=info)


@hookimpl
def compile(target: Target, exported: ExportedModel, settings: MeasureSettings, workdir: Path) -> CompiledModel | None:
    if not _serves(target):
        return None
    if exported.format != "xmodel" or exported.path is None:
        quantizer = exported.info.get("quantization", {}).get("quantizer", "?")
        raise CompileError(
            f"vai_c_xir compiles the xmodel of vai_q_pytorch; this model was quantized by {quantizer} "
            f"({exported.format}), which no DPU compiler takes: use {quantize.OPTION}=vai_q_pytorch (importable "
            f"here, or through {quantize.ENV_PYTHON})"
        )
    board = load_board(target.backend, settings)
    net_name = exported.info.get("net_name") or net_name_for(Path(exported.path).stem)
    result = compile_xmodel(
        Path(exported.path),
        Path(str(board.arch)),
        net_name,
        Path(workdir) / "compiled",
        timeout=board.compile_timeout_s,
    )
    return CompiledModel(handle=result.xmodel, info=exported.info | result.info() | {"net_name": net_name})


def _measure(target: Target, compiled: CompiledModel, settings: MeasureSettings, metric: str) -> Measurement:
    from accelnas.plugins.fpga_vitis.measure import measure_on_board

    board = load_board(target.backend, settings)
    if metric == "throughput" and settings.batch_size not in (None, board.batch):
        raise BoardConfigError(
            f"{target.name} runs at its DPU's batch {board.batch} (board entry 'batch'); "
            f"batch size {settings.batch_size} cannot apply"
        )
    return measure_on_board(board, compiled, settings, metric)


@hookimpl
def measure_throughput(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    if not _serves(target):
        return None
    return _measure(target, compiled, settings, "throughput")


@hookimpl
def measure_latency(target: Target, compiled: CompiledModel, settings: MeasureSettings) -> Measurement | None:
    if not _serves(target):
        return None
    return _measure(target, compiled, settings, "latency")
