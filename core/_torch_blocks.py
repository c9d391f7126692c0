"""torch modules behind :func:`accelnas.core.model.build_model` (imported lazily: torch is heavy).

Standalone on purpose: this file imports only torch, and builds the network from a plain description
(JSON-compatible dict, :func:`accelnas.core.model.network_description`), so that a process without
accelnas (Python 3.7 and torch 1.12 or later: the Vitis AI quantizer's environment) loads it by path
and rebuilds the identical network. Keep it free of accelnas imports and of syntax or APIs newer than
Python 3.7 and torch 1.12.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DESCRIPTION_FORMAT = "accelnas-mbconvnet/1"
ACTIVATIONS = {"silu": nn.SiLU, "hardswish": nn.Hardswish}
GATES = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}


def _activation(description: dict[str, Any]) -> type:
    name = description.get("activation", "silu")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r} (expected one of {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _gate(description: dict[str, Any]) -> type:
    name = description.get("gate", "sigmoid")
    if name not in GATES:
        raise ValueError(f"unknown gate {name!r} (expected one of {', '.join(GATES)})")
    return GATES[name]


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = nn.SiLU
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act())
    return layers


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool, 1x1 reduce + SiLU, 1x1 expand + sigmoid, rescale."""

    def __init__(self, channels: int, squeeze: int, act: type = nn.SiLU, gate: type = nn.Sigmoid) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Inverted residual block of MobileNetV2/MnasNet/EfficientNet, from one block of a description."""

    def __init__(self, spec: dict[str, Any], act: type = nn.SiLU, gate: type = nn.Sigmoid) -> None:
        super().__init__()
        h = int(spec["hidden"])
        layers: list[nn.Module] = []
        if spec["expansion"] != 1:
            layers += _conv_bn(spec["in_channels"], h, 1, act=act)
        layers += _conv_bn(h, h, spec["kernel"], spec["stride"], groups=h, act=act)
        if spec["se"]:
            layers.append(SqueezeExcite(h, spec["squeeze"], act, gate))
        layers += _conv_bn(h, spec["out_channels"], 1, act=None)
        self.block = nn.Sequential(*layers)
        self.residual = bool(spec["residual"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MBConvNet(nn.Module):
    """The whole network of a description: stem, MBConv blocks, head, classifier."""

    def __init__(self, description: dict[str, Any]) -> None:
        super().__init__()
        if description.get("format") != DESCRIPTION_FORMAT:
            raise ValueError(f"not a network description of format {DESCRIPTION_FORMAT}")
        self.description = description
        act, gate = _activation(description), _gate(description)
        self.stem = nn.Sequential(*_conv_bn(3, description["stem_channels"], 3, 2, act=act))
        self.blocks = nn.Sequential(*(MBConv(spec, act, gate) for spec in description["blocks"]))
        self.head = nn.Sequential(*_conv_bn(description["head_in_channels"], description["head_channels"], 1, act=act))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(description["dropout"])
        self.classifier = nn.Linear(description["head_channels"], description["num_classes"])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features**0.5  # as torchvision's EfficientNet initialises its classifier
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


def build(description: dict[str, Any]) -> MBConvNet:
    """The network of ``description`` (random initialisation, training mode)."""
    return MBConvNet(description)
