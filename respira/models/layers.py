"""Building blocks shared by the models. Feature maps are [batch, channels, bins, frames]."""

from __future__ import annotations

import torch
from torch import nn


def normalize_bins(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm with one mean/scale per frequency bin (PANNs' `bn0`): x [b, c, bins, frames] -> same shape."""
    return bn(x.transpose(1, 2)).transpose(1, 2)


def pool_frames(x: torch.Tensor) -> torch.Tensor:
    """Global pooling over time, max + mean (as PANNs): x [b, c, frames] -> [b, c]."""
    return x.amax(dim=2) + x.mean(dim=2)


def halvings(size: int, count: int) -> list[int]:
    """Factors (2 or 1) for `count` successive halvings of an axis of `size`, halving only while size >= 2.

    Lets a model with a fixed number of poolings take few frequency bins (e.g. 13 MFCCs).
    """
    factors = []
    for _ in range(count):
        factors.append(2 if size >= 2 else 1)
        size //= factors[-1]
    return factors


def conv_bn_relu(in_channels: int, out_channels: int, *, stride: tuple[int, int] = (1, 1)) -> nn.Sequential:
    """3x3 convolution (no bias), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
