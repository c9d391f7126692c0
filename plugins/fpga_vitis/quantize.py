"""8-bit post-training quantization with the best quantizer present, and its float-vs-int8 agreement.

Order of preference (option ``fpga_quantizer``: ``auto``, ``vai_q_pytorch``, ``vai_q_onnx``,
``onnxruntime``):

1. ``vai_q_pytorch`` (``pytorch_nndct``, Vitis AI container): calibration pass, then the ``test`` pass
   exports ``<Model>_int.xmodel``, the input of ``vai_c_xir``. The only quantizer whose output compiles.
   With ``ACCELNAS_VAI_PYTHON`` set to the container's ``vitis-ai-pytorch`` interpreter (Python 3.7,
   torch 1.12 in Vitis AI 3.0; 3.8, torch 1.13 in 3.5: accelnas itself cannot be installed there),
   it runs in that interpreter: the network's plain description (JSON), its weights (``.npz``) and
   the calibration images (``.npy``) go to :mod:`.vai_q_worker`, which rebuilds the identical network
   with ``core/_torch_blocks.py`` and returns the xmodel and its int8 logits. Without the variable it
   runs in this process.
2. ``vai_q_onnx``: power-of-two, symmetric int8 QDQ ONNX for DPUs (``enable_dpu``); checks fidelity only.
3. ONNX Runtime ``quantize_static``: QDQ, int8 per-channel weights, int8 symmetric activations (MinMax);
   available everywhere. The two ONNX quantizers measure agreement only (call :func:`quantize`): a
   campaign refuses them, since every architecture would fail at compile.

Agreement is measured on the calibration images: cosine similarity and top-1 agreement of the logits
and their largest absolute difference, float model against quantized model.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accelnas.core.errors import first_line
from accelnas.plugins.fpga_vitis.errors import QuantizeError

log = logging.getLogger(__name__)

OPTION = "fpga_quantizer"
ENV_PYTHON = "ACCELNAS_VAI_PYTHON"  # the Vitis AI container's vitis-ai-pytorch interpreter
WORKER = Path(__file__).with_name("vai_q_worker.py")
WORKER_TIMEOUT_S = 4 * 3600.0
# the worker's rebuilt float network must give this module's float logits (torch versions differ slightly)
FLOAT_TOLERANCE = 1e-3
QUANTIZERS = ("vai_q_pytorch", "vai_q_onnx", "onnxruntime")
ONNX_QUANTIZERS = ("vai_q_onnx", "onnxruntime")  # fidelity only: their QDQ ONNX compiles for no DPU
MODULES = {"vai_q_pytorch": "pytorch_nndct", "vai_q_onnx": "vai_q_onnx", "onnxruntime": "onnxruntime"}


@dataclass
class QuantizeResult:
    """A quantized model: the file, which quantizer made it, and how closely it follows the float one."""

    quantizer: str
    path: Path
    format: str  # "xmodel" (compilable by vai_c_xir) or "onnx-qdq"
    agreement: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    worker: dict[str, Any] | None = None  # the ACCELNAS_VAI_PYTHON run: interpreter, Python, torch versions

    def info(self) -> dict[str, Any]:
        return {
            "quantizer": self.quantizer,
            "format": self.format,
            "agreement": self.agreement,
            "seconds": round(self.seconds, 3),
        } | ({"worker": self.worker} if self.worker else {})


def importable(quantizer: str) -> bool:
    return importlib.util.find_spec(MODULES[quantizer]) is not None


def worker_python() -> str | None:
    """The interpreter named by ``ACCELNAS_VAI_PYTHON`` (None when unset)."""
    return os.environ.get(ENV_PYTHON) or None


def check_worker_python() -> str:
    """The worker interpreter, resolved; raise :class:`QuantizeError` when it is not an executable."""
    python = worker_python()
    found = shutil.which(python) if python else None
    if not found:
        raise QuantizeError(f"{ENV_PYTHON}={python} is not an executable Python (the vitis-ai-pytorch interpreter)")
    return found


def usable(quantizer: str) -> bool:
    """Whether ``quantizer`` can run here (vai_q_pytorch also through ``ACCELNAS_VAI_PYTHON``)."""
    if quantizer == "vai_q_pytorch" and worker_python():
        return True
    return importable(quantizer)


def check_requested(requested: str) -> str:
    """``requested`` if it is ``auto`` or a known quantizer; raise :class:`QuantizeError` otherwise."""
    if requested != "auto" and requested not in QUANTIZERS:
        raise QuantizeError(f"option {OPTION} must be auto or one of {', '.join(QUANTIZERS)}, got {requested!r}")
    return requested


def choose_quantizer(requested: str = "auto") -> str:
    """The quantizer to run: the first importable one for ``auto``; raise if a named one is missing."""
    if check_requested(requested) == "auto":
        return next(q for q in QUANTIZERS if usable(q))
    if not usable(requested):
        hint = f", and {ENV_PYTHON} is not set" if requested == "vai_q_pytorch" else ""
        raise QuantizeError(f"quantizer {requested} is not importable here (module {MODULES[requested]}{hint})")
    return requested


def agreement(reference: np.ndarray, quantized: np.ndarray) -> dict[str, Any]:
    """Cosine similarity (mean, min), top-1 agreement and max |difference| of two logit batches."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    q = np.asarray(quantized, dtype=np.float64).reshape(len(quantized), -1)
    if ref.shape != q.shape:
        raise QuantizeError(f"quantized logits have shape {q.shape}, float logits {ref.shape}")
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(q, axis=1)
    cos = np.where(norms > 0, np.sum(ref * q, axis=1) / np.maximum(norms, 1e-30), 0.0)
    return {
        "images": len(ref),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "top1_agreement": float(np.mean(ref.argmax(1) == q.argmax(1))),
        "max_abs_diff": float(np.abs(ref - q).max()),
        "logit_range": float(ref.max() - ref.min()),
    }


def float_logits(model: Any, images: np.ndarray, batch: int = 8) -> np.ndarray:
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            outs.append(model(torch.from_numpy(images[i : i + batch])).float().numpy())
    return np.concatenate(outs)


def _reader(input_name: str, images: np.ndarray):
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        """Feeds the calibration images one at a time."""

        def __init__(self) -> None:
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= len(images):
                return None
            self.index += 1
            return {input_name: images[self.index - 1 : self.index]}

        def rewind(self) -> None:
            self.index = 0

    return ImageReader()


def _onnx_logits(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[i : i + 1]})[0] for i in range(len(images))])


def quantize_onnxruntime(float_onnx: Path, out: Path, images: np.ndarray, input_name: str = "input") -> Path:
    """ONNX Runtime static quantization: QDQ, int8 per-channel weights, int8 symmetric activations."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(float_onnx),
        str(out),
        _reader(input_name, images),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return out


def quantize_vai_q_onnx(float_onnx: Path, out: Path, images: np.ndarray, input_name: str = "input") -> Path:
    """Vitis AI ONNX quantizer: power-of-two scales, symmetric int8, DPU-compatible QDQ."""
    import vai_q_onnx

    vai_q_onnx.quantize_static(
        str(float_onnx),
        str(out),
        _reader(input_name, images),
        quant_format=vai_q_onnx.QuantFormat.QDQ,
        calibrate_method=vai_q_onnx.PowerOfTwoMethod.MinMSE,
        activation_type=vai_q_onnx.QuantType.QInt8,
        weight_type=vai_q_onnx.QuantType.QInt8,
        enable_dpu=True,
        extra_options={"ActivationSymmetric": True},
    )
    return out


def quantize_vai_q_pytorch(model: Any, out_dir: Path, images: np.ndarray, dpu: str) -> tuple[Path, np.ndarray]:
    """vai_q_pytorch in this process: calibrate, then export ``<Model>_int.xmodel``; return it and the
    int8 logits (the worker's own :func:`~.vai_q_worker.quantize_model`, the same steps)."""
    from accelnas.plugins.fpga_vitis.vai_q_worker import quantize_model

    xmodel, logits, _ = quantize_model(model, np.ascontiguousarray(images, dtype=np.float32), out_dir, dpu)
    if xmodel is None:
        raise QuantizeError(f"vai_q_pytorch exported no *_int.xmodel into {out_dir}")
    return Path(xmodel), logits


def _worker_failure(python: str, output: str, returncode: int) -> QuantizeError:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    marked = [line[len("vai_q_worker: ") :] for line in lines if line.startswith("vai_q_worker: ")]
    detail = marked[-1] if marked else (lines[-1] if lines else "no output")
    return QuantizeError(f"vai_q_pytorch in {python} failed (exit status {returncode}): {detail}")


def quantize_vai_q_pytorch_worker(
    model: Any, out_dir: Path, images: np.ndarray, dpu: str, reference: np.ndarray
) -> tuple[Path, np.ndarray, dict[str, Any]]:
    """vai_q_pytorch in ``ACCELNAS_VAI_PYTHON`` (:mod:`.vai_q_worker`): the xmodel, int8 logits, worker facts."""
    from accelnas.core import _torch_blocks

    python = check_worker_python()
    description = getattr(model, "description", None)
    if not isinstance(description, dict):
        raise QuantizeError(
            f"{ENV_PYTHON}: the vai_q_pytorch worker rebuilds networks of accelnas.core.model.build_model; "
            f"this {type(model).__name__} carries no network description"
        )
    out_dir = Path(out_dir)
    job_dir = out_dir.parent / "vai_q_job"
    job_dir.mkdir(parents=True, exist_ok=True)
    network, weights, calib = job_dir / "network.json", job_dir / "weights.npz", job_dir / "images.npy"
    network.write_text(json.dumps(description, indent=1), encoding="utf-8")
    np.savez(weights, **{name: t.detach().cpu().numpy() for name, t in model.state_dict().items()})
    np.save(calib, np.ascontiguousarray(images, dtype=np.float32), allow_pickle=False)
    job = {
        "blocks": str(Path(_torch_blocks.__file__).resolve()),
        "network": str(network),
        "weights": str(weights),
        "images": str(calib),
        "output_dir": str(out_dir),
        "target": dpu,
        "result": str(job_dir / "result.json"),
    }
    job_file = job_dir / "job.json"
    job_file.write_text(json.dumps(job, indent=1), encoding="utf-8")
    log_path = job_dir / "worker.log"
    try:
        done = subprocess.run(
            [python, str(WORKER), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise QuantizeError(f"vai_q_pytorch in {python} timed out after {WORKER_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise QuantizeError(f"vai_q_pytorch in {python} could not start: {exc.strerror or exc}") from None
    log_path.write_text(done.stdout or "", encoding="utf-8")
    if done.returncode != 0:
        raise _worker_failure(python, done.stdout or "", done.returncode)
    try:
        result = json.loads((job_dir / "result.json").read_text(encoding="utf-8"))
        worker_float = np.load(out_dir / "float_logits.npy", allow_pickle=False)
        logits = np.load(out_dir / "quant_logits.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise QuantizeError(f"vai_q_pytorch in {python} left no readable result: {first_line(exc)}") from None
    scale = max(float(np.abs(reference).max()), 1.0)
    if worker_float.shape != reference.shape or float(np.abs(worker_float - reference).max()) > FLOAT_TOLERANCE * scale:
        raise QuantizeError(f"the network rebuilt in {python} gives other float logits than this one: not quantized")
    xmodel = Path(result["xmodel"])
    if not xmodel.is_file():
        raise QuantizeError(f"vai_q_pytorch in {python} reported {xmodel}, which does not exist")
    facts = {k: result.get(k) for k in ("python", "torch", "pytorch_nndct")} | {"interpreter": python}
    return xmodel, logits, facts


def quantize(
    model: Any,
    images: np.ndarray,
    workdir: Path,
    *,
    float_onnx: Path | None = None,
    quantizer: str = "auto",
    dpu: str = "",
) -> QuantizeResult:
    """Quantize ``model`` (or its ONNX export ``float_onnx``) with the chosen quantizer; measure agreement."""
    name = choose_quantizer(quantizer)
    if name != "vai_q_pytorch" and float_onnx is None:
        raise QuantizeError(f"{name} quantizes an ONNX export; none was given")
    workdir = Path(workdir)
    reference = float_logits(model, images)
    start = time.perf_counter()
    worker: dict[str, Any] | None = None
    try:
        if name == "vai_q_pytorch" and worker_python():
            out_dir = workdir / "quantize_result"
            out_dir.mkdir(parents=True, exist_ok=True)
            path, logits, worker = quantize_vai_q_pytorch_worker(model, out_dir, images, dpu, reference)
            fmt = "xmodel"
        elif name == "vai_q_pytorch":
            out_dir = workdir / "quantize_result"
            out_dir.mkdir(parents=True, exist_ok=True)
            path, logits = quantize_vai_q_pytorch(model, out_dir, images, dpu)
            fmt = "xmodel"
        else:
            source = Path(str(float_onnx))
            path = workdir / f"{source.stem}_int8.onnx"
            run = quantize_vai_q_onnx if name == "vai_q_onnx" else quantize_onnxruntime
            run(source, path, images)
            logits = _onnx_logits(path, images)
            fmt = "onnx-qdq"
    except QuantizeError:
        raise
    except Exception as exc:
        message = first_line(exc)
        raise QuantizeError(f"{name} failed: {type(exc).__name__}: {message}") from exc
    seconds = time.perf_counter() - start
    result = QuantizeResult(name, path, fmt, agreement(reference, logits), seconds, worker)
    log.info("quantized with %s in %.1fs: %s", name, seconds, result.agreement)
    return result
