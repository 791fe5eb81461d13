"""A small ResNet-style 2D CNN with basic residual blocks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from respira.models.layers import conv_bn_relu, halvings, normalize_bins, pool_frames
from respira.models.registry import register


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, plus the input (1x1 conv-BN when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != (1, 1) or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


@register("resnet")
class ResNet(nn.Module):
    """ResNet over features [b, in_channels, n_bins, frames] -> logits [b, n_classes].

    A stride-2 3x3 stem, then one stage per entry of `widths` with `blocks[i]` basic blocks,
    every stage after the first starting with stride 2; mean over frequency, max + mean
    over time, dropout, linear head. ~2.8M parameters by default.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        in_channels: int = 1,
        n_bins: int = 64,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not widths or len(widths) != len(blocks) or min(blocks) < 1:
            raise ValueError(f"need one block count >= 1 per width, got widths={widths}, blocks={blocks}")
        freq = halvings(n_bins, len(widths))
        self.bn0 = nn.BatchNorm2d(n_bins)
        self.stem = conv_bn_relu(in_channels, widths[0], stride=(freq[0], 2))
        stages = []
        for i, (c_in, c_out, n) in enumerate(zip((widths[0], *widths), widths, blocks)):
            stride = (freq[i], 2) if i else (1, 1)
            repeats = (BasicBlock(c_out, c_out) for _ in range(n - 1))
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride=stride), *repeats))
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(normalize_bins(self.bn0, x)))
        return self.head(self.dropout(pool_frames(x.mean(dim=2))))
