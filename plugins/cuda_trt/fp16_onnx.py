"""fp16 ONNX graphs for strongly typed TensorRT networks, and their check against the fp32 graph.

TensorRT 10.12 deprecates and TensorRT 11 removes the FP16 builder flag: the precision of a strongly
typed network is the precision of its ONNX graph. :func:`convert_to_fp16` rewrites an fp32 graph to
fp16 with onnxconverter-common, keeping fp32 inputs and outputs (a Cast at each end), and validates
it with the ONNX checker. :func:`compare_fp16` runs both graphs with ONNX Runtime on the CPU on the
same seeded inputs.

Tolerance: fp16 keeps 11 significant bits (unit roundoff 2^-11 ≈ 4.9e-4); through the 20-60 folded
conv/BN layers of this space the rounding errors accumulate to well under 1% of the logit range. A
graph agrees when ``max |fp16 - fp32| <= FP16_RELATIVE_TOLERANCE * max |fp32|`` (5%) and the cosine
similarity of the logits is at least ``FP16_MIN_COSINE`` (0.999), and all outputs are finite; an
overflow (inf/NaN) or a broken conversion fails these by orders of magnitude.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accelnas.plugins.cuda_trt.errors import Fp16ConversionError

log = logging.getLogger(__name__)

FP16_RELATIVE_TOLERANCE = 0.05
FP16_MIN_COSINE = 0.999


@dataclass(frozen=True)
class Fp16Agreement:
    """How closely the fp16 graph reproduces the fp32 graph's outputs on the same inputs."""

    batch: int
    input_size: int
    max_abs_diff: float
    ref_max_abs: float
    relative_error: float  # max_abs_diff / ref_max_abs
    cosine: float
    top1_agreement: float  # share of inputs whose arg-max class is the same
    finite: bool

    @property
    def ok(self) -> bool:
        return self.finite and self.relative_error <= FP16_RELATIVE_TOLERANCE and self.cosine >= FP16_MIN_COSINE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def convert_to_fp16(src: Path, dst: Path) -> Path:
    """Write the fp16 version of the fp32 ONNX graph ``src`` to ``dst`` (fp32 inputs/outputs kept)."""
    import onnx
    from onnxconverter_common import float16

    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise Fp16ConversionError(f"cannot read ONNX graph {src}: {exc}") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per weight clamped to the fp16 range
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
    try:
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        raise Fp16ConversionError(f"fp16 graph of {src.name} fails the ONNX checker: {exc}") from exc
    onnx.save(converted, str(dst))
    return dst


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(4, os.cpu_count() or 1)
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def agreement(reference: np.ndarray, candidate: np.ndarray, input_size: int) -> Fp16Agreement:
    """Compare two output arrays of shape (batch, classes)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        raise Fp16ConversionError(f"fp16 graph outputs shape {out.shape}, the fp32 graph {ref.shape}")
    finite = bool(np.isfinite(out).all())
    diff = float(np.abs(ref - out).max()) if finite else math.inf
    scale = float(np.abs(ref).max())
    norm = float(np.linalg.norm(ref) * np.linalg.norm(out))
    cosine = float((ref * out).sum() / norm) if finite and norm > 0 else 0.0
    top1 = float((ref.argmax(axis=-1) == out.argmax(axis=-1)).mean()) if finite else 0.0
    return Fp16Agreement(
        batch=int(ref.shape[0]),
        input_size=input_size,
        max_abs_diff=diff,
        ref_max_abs=scale,
        relative_error=diff / scale if scale > 0 else math.inf,
        cosine=cosine,
        top1_agreement=top1,
        finite=finite,
    )


def compare_fp16(fp32_path: Path, fp16_path: Path, input_size: int, *, batch: int = 2, seed: int = 0) -> Fp16Agreement:
    """Run both graphs with ONNX Runtime (CPU) on the same seeded normal inputs and compare the outputs."""
    x = np.random.default_rng(seed).standard_normal((batch, 3, input_size, input_size), dtype=np.float32)
    outputs = []
    for path in (fp32_path, fp16_path):
        session = _session(path)
        outputs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    return agreement(outputs[0], outputs[1], input_size)


def checked_fp16(fp32_path: Path, fp16_path: Path, input_size: int, *, check: bool = True) -> dict[str, Any]:
    """Convert, validate and (when ``check``) compare; raise :class:`Fp16ConversionError` on disagreement.

    Returns facts for the provenance (the agreement figures, or that the comparison was skipped).
    """
    convert_to_fp16(fp32_path, fp16_path)
    if not check:
        return {"fp16_check": "skipped"}
    result = compare_fp16(fp32_path, fp16_path, input_size)
    if not result.ok:
        raise Fp16ConversionError(
            f"fp16 graph disagrees with fp32: relative error {result.relative_error:.3g} "
            f"(limit {FP16_RELATIVE_TOLERANCE}), cosine {result.cosine:.5f} (minimum {FP16_MIN_COSINE}), "
            f"finite={result.finite}"
        )
    log.debug("fp16 graph agrees with fp32: %s", result)
    return {"fp16_check": result.to_dict()}
