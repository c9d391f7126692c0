"""PyTorch network of an :class:`~accelnas.core.space.Architecture`, and its parameter and MAC counts.

The network is the EfficientNet-B0 skeleton of Accel-NASBench: a 3x3/2 stem to 32 channels, seven
stages of MBConv blocks (expand 1x1 when the ratio is not 1, depthwise kxk, optional squeeze-excite
with ``max(1, in_channels // 4)`` squeeze channels, project 1x1, residual when shapes match), all
with BatchNorm and SiLU, then a 1x1 head to 1280 channels, global pooling and a 1000-way classifier.

MACs follow the convention of the published dataset, which is thop's counting at batch 1:
convolutions count ``output elements x (in_channels / groups) x kh x kw`` (bias not counted),
BatchNorm counts ``4 x elements`` (thop's normalisation rule, doubled for the affine part),
adaptive average pools (squeeze-excite and the final one) count ``(H x W + 1) x channels``,
the classifier counts ``in_features x out_features``; activations, the gating product and residual
additions count nothing. :func:`count_macs` computes this analytically (no torch needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from accelnas.core.records import is_whole
from accelnas.core.space import Architecture

STEM_CHANNELS = 32
STRIDES: tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
IN_CHANNELS: tuple[int, ...] = (32, 16, 24, 40, 80, 112, 192)
OUT_CHANNELS: tuple[int, ...] = (16, 24, 40, 80, 112, 192, 320)
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
BN_MACS = 4  # per element, thop's rule for an affine BatchNorm


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """One MBConv layer after expanding the stages."""

    stage: int
    in_channels: int
    out_channels: int
    expansion: int
    kernel: int
    stride: int
    se: bool

    @property
    def hidden(self) -> int:
        return self.in_channels * self.expansion

    @property
    def squeeze(self) -> int:
        return max(1, self.in_channels // 4)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def _check_arguments(arch: Architecture, num_classes: int = NUM_CLASSES) -> None:
    """``TypeError``/``ValueError`` for what the counts and the builder would misread."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"expected an Architecture, got {type(arch).__name__} (see parse_architecture)")
    if not is_whole(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1, got {num_classes!r}")


def block_specs(arch: Architecture) -> Iterator[BlockSpec]:
    """The MBConv layers of ``arch`` in order."""
    _check_arguments(arch)
    for i, stage in enumerate(arch.stages):
        for j in range(stage.l):
            yield BlockSpec(
                stage=i,
                in_channels=IN_CHANNELS[i] if j == 0 else OUT_CHANNELS[i],
                out_channels=OUT_CHANNELS[i],
                expansion=stage.e,
                kernel=stage.k,
                stride=STRIDES[i] if j == 0 else 1,
                se=stage.se,
            )


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def count_params(arch: Architecture, num_classes: int = NUM_CLASSES) -> int:
    """Trainable parameters of :func:`build_model` (BatchNorm affine included, running stats not)."""
    _check_arguments(arch, num_classes)
    total = 3 * STEM_CHANNELS * 9 + 2 * STEM_CHANNELS
    for b in block_specs(arch):
        h = b.hidden
        if b.expansion != 1:
            total += b.in_channels * h + 2 * h
        total += h * b.kernel * b.kernel + 2 * h
        if b.se:
            total += h * b.squeeze + b.squeeze + b.squeeze * h + h
        total += h * b.out_channels + 2 * b.out_channels
    total += OUT_CHANNELS[-1] * HEAD_CHANNELS + 2 * HEAD_CHANNELS
    total += HEAD_CHANNELS * num_classes + num_classes
    return total


def count_macs(arch: Architecture, input_size: int = 224, num_classes: int = NUM_CLASSES) -> int:
    """Multiply-accumulates at batch 1 in the dataset's (thop) convention; see the module docstring."""
    _check_arguments(arch, num_classes)
    if not is_whole(input_size) or input_size < 1:
        raise ValueError(f"input_size must be a whole number >= 1, got {input_size!r}")
    size = _conv_out(input_size, 3, 2)
    area = size * size
    total = area * STEM_CHANNELS * 3 * 9 + BN_MACS * area * STEM_CHANNELS
    for b in block_specs(arch):
        h = b.hidden
        if b.expansion != 1:
            total += area * h * b.in_channels + BN_MACS * area * h
        size = _conv_out(size, b.kernel, b.stride)
        area = size * size
        total += area * h * b.kernel * b.kernel + BN_MACS * area * h
        if b.se:
            total += (area + 1) * h + b.squeeze * h + h * b.squeeze
        total += area * b.out_channels * h + BN_MACS * area * b.out_channels
    total += area * HEAD_CHANNELS * OUT_CHANNELS[-1] + BN_MACS * area * HEAD_CHANNELS
    total += (area + 1) * HEAD_CHANNELS
    total += HEAD_CHANNELS * num_classes
    return total


def network_description(
    arch: Architecture,
    num_classes: int = NUM_CLASSES,
    dropout: float = 0.2,
    *,
    activation: str = "silu",
    gate: str = "sigmoid",
) -> dict[str, Any]:
    """The plain (JSON) description :func:`build_model` builds ``arch`` from.

    ``core/_torch_blocks.py`` builds the network from it without importing accelnas, so another
    process (another Python) can rebuild the identical network. ``activation`` (``silu`` or
    ``hardswish``) and ``gate`` (``sigmoid`` or ``hardsigmoid``) name the squeeze-excite and block
    activations.
    """
    _check_arguments(arch, num_classes)
    blocks = [
        {
            "in_channels": b.in_channels,
            "out_channels": b.out_channels,
            "expansion": b.expansion,
            "kernel": b.kernel,
            "stride": b.stride,
            "se": b.se,
            "hidden": b.hidden,
            "squeeze": b.squeeze,
            "residual": b.residual,
        }
        for b in block_specs(arch)
    ]
    return {
        "format": "accelnas-mbconvnet/1",
        "architecture": arch.id,
        "stem_channels": STEM_CHANNELS,
        "blocks": blocks,
        "head_in_channels": OUT_CHANNELS[-1],
        "head_channels": HEAD_CHANNELS,
        "num_classes": int(num_classes),
        "dropout": float(dropout),
        "activation": activation,
        "gate": gate,
    }


def build_model(arch: Architecture, num_classes: int = NUM_CLASSES, dropout: float = 0.2):
    """The ``torch.nn.Module`` of ``arch`` (random initialisation, training mode)."""
    from accelnas.core import _torch_blocks as tb

    net = tb.MBConvNet(network_description(arch, num_classes, dropout))
    net.architecture = arch
    return net


def calibrate_batchnorm(model, input_size: int, *, batches: int = 4, batch_size: int = 8, seed: int = 0):
    """Set BatchNorm running statistics from random inputs, then switch to eval mode.

    Freshly initialised networks have running mean 0 and variance 1 in every BatchNorm; in eval mode
    activations then drift through the depth of the network into denormal floats that slow CPUs by
    orders of magnitude. Calibrating once gives the activation ranges a trained network has.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, 3, input_size, input_size, generator=gen))
    for m, momentum in zip(bns, saved, strict=True):
        m.momentum = momentum
    return model.eval()
