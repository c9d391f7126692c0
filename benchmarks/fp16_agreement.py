"""How closely the fp16 ONNX graphs the GPU plugin builds its engines from agree with fp32.

    python benchmarks/fp16_agreement.py [--num 5] [--sizes 32,224] [--batch 2] [--seed 0]

Exports EfficientNet-B0 and seeded random architectures (BatchNorm statistics calibrated at each input
size, as campaigns build them) to ONNX, converts each to fp16 as
``gpu/tensorrt`` does (fp32 inputs and outputs kept) and runs both graphs with ONNX Runtime on the
CPU on the same inputs. Prints per architecture and input size the largest error relative to the
largest fp32 logit, the cosine similarity of the logits and the top-1 agreement, then the worst of
each against the limits ``checked_fp16`` enforces (5%, 0.999).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from accelnas.core.cli_options import at_least_one, run_script, seed
from accelnas.core.model import build_model, calibrate_batchnorm
from accelnas.core.records import MeasureSettings
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.plugins.cpu_ort.plugin import export_onnx
from accelnas.plugins.cuda_trt.fp16_onnx import (
    FP16_MIN_COSINE,
    FP16_RELATIVE_TOLERANCE,
    compare_fp16,
    convert_to_fp16,
)


def _sizes(text: str) -> list[int]:
    """Input sizes, each within the range campaigns measure (that of :class:`MeasureSettings`)."""
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one input size")
    for size in sizes:
        try:
            MeasureSettings(input_size=size)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=at_least_one, default=5, help="architectures: B0 and NUM-1 random ones")
    parser.add_argument("--sizes", type=_sizes, default=[32, 224], help="input sizes, comma-separated")
    parser.add_argument("--batch", type=at_least_one, default=2, help="images per comparison")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random architectures")
    args = parser.parse_args(argv)
    archs = [EFFICIENTNET_B0, *sample(args.num - 1, seed=args.seed)]
    print(f"{'architecture':<36} {'size':>5} {'rel. error':>11} {'cosine':>9} {'top-1':>6}")
    results = []
    with tempfile.TemporaryDirectory(prefix="accelnas-fp16-") as tmp:
        for arch in archs:
            for size in args.sizes:
                model = calibrate_batchnorm(build_model(arch), size)  # as campaigns build it
                fp32 = export_onnx(model, Path(tmp) / f"{arch.id}-{size}.onnx", size)
                fp16 = convert_to_fp16(fp32, Path(tmp) / f"{arch.id}-{size}.fp16.onnx")
                result = compare_fp16(fp32, fp16, size, batch=args.batch)
                results.append(result)
                print(
                    f"{arch.id:<36} {size:>5} {result.relative_error:>11.2e} {result.cosine:>9.6f} "
                    f"{result.top1_agreement:>6.2f}"
                )
    worst_error = max(r.relative_error for r in results)
    worst_cosine = min(r.cosine for r in results)
    print(
        f"worst: relative error {worst_error:.2e} (limit {FP16_RELATIVE_TOLERANCE:g}), "
        f"cosine {worst_cosine:.6f} (minimum {FP16_MIN_COSINE:g}); "
        f"{sum(r.ok for r in results)} of {len(results)} within the limits"
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    run_script(main)
