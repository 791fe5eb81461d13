"""A MobileNetV2-style CNN: inverted residual blocks with depthwise 3x3 convolutions."""

from __future__ import annotations

import torch
from torch import nn

from respira.models.layers import halvings, normalize_bins, pool_frames
from respira.models.registry import register

# (expansion, output channels, repeats, stride of the first repeat) per stage, before width_mult
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 3, 2), (6, 96, 2, 1))
_STEM, _LAST = 32, 384


def _conv_bn(
    in_channels: int, out_channels: int, *, kernel: int = 1, stride: tuple[int, int] = (1, 1), groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Convolution (no bias), BatchNorm, then ReLU6 unless act=False."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion, depthwise 3x3 (stride), linear 1x1 projection; plus the input when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, *, expansion: int, stride: tuple[int, int]) -> None:
        super().__init__()
        hidden = in_channels * expansion
        expand = [_conv_bn(in_channels, hidden)] if expansion != 1 else []
        self.layers = nn.Sequential(
            *expand,
            _conv_bn(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            _conv_bn(hidden, out_channels, act=False),
        )
        self.residual = stride == (1, 1) and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


@register("mobilenet")
class MobileNet(nn.Module):
    """MobileNetV2-style CNN over features [b, in_channels, n_bins, frames] -> logits [b, n_classes].

    width_mult scales every layer's channels (rounded to multiples of 8); ~0.5M parameters at 1.0.
    Time is reduced 16 times; frequency as far as the bins allow.
    """

    def __init__(
        self, *, n_classes: int, in_channels: int = 1, n_bins: int = 64, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        freq = iter(halvings(n_bins, 1 + sum(s == 2 for *_, s in _STAGES)))
        self.bn0 = nn.BatchNorm2d(n_bins)
        c_in = _divisible(_STEM * width_mult)
        layers: list[nn.Module] = [_conv_bn(in_channels, c_in, kernel=3, stride=(next(freq), 2))]
        for expansion, c, repeats, first_stride in _STAGES:
            c_out = _divisible(c * width_mult)
            for i in range(repeats):
                stride = (next(freq), 2) if i == 0 and first_stride == 2 else (1, 1)
                layers.append(InvertedResidual(c_in, c_out, expansion=expansion, stride=stride))
                c_in = c_out
        last = _divisible(_LAST * max(width_mult, 1.0))
        layers.append(_conv_bn(c_in, last))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(last, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(normalize_bins(self.bn0, x))
        return self.head(self.dropout(pool_frames(x.mean(dim=2))))


def _divisible(channels: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of divisor, not below 90% of the value (as MobileNetV2)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded
