"""torch modules behind :func:`accelnas.core.model.build_model` (imported lazily: torch is heavy)."""

from __future__ import annotations

import torch
from torch import nn

from accelnas.core.model import HEAD_CHANNELS, OUT_CHANNELS, STEM_CHANNELS, BlockSpec, block_specs
from accelnas.core.space import Architecture


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.SiLU())
    return layers


class SqueezeExcite(nn.Module):
    """Channel attention: global average pool, 1x1 reduce + SiLU, 1x1 expand + sigmoid, rescale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Inverted residual block of MobileNetV2/MnasNet/EfficientNet."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        h = spec.hidden
        layers: list[nn.Module] = []
        if spec.expansion != 1:
            layers += _conv_bn(spec.in_channels, h, 1)
        layers += _conv_bn(h, h, spec.kernel, spec.stride, groups=h)
        if spec.se:
            layers.append(SqueezeExcite(h, spec.squeeze))
        layers += _conv_bn(h, spec.out_channels, 1, act=False)
        self.block = nn.Sequential(*layers)
        self.residual = spec.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MBConvNet(nn.Module):
    """The whole network: stem, MBConv stages, head, classifier."""

    def __init__(self, arch: Architecture, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.architecture = arch
        self.stem = nn.Sequential(*_conv_bn(3, STEM_CHANNELS, 3, 2))
        self.blocks = nn.Sequential(*(MBConv(spec) for spec in block_specs(arch)))
        self.head = nn.Sequential(*_conv_bn(OUT_CHANNELS[-1], HEAD_CHANNELS, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
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
