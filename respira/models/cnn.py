"""The compact CNN (the default model) and the dual-input model built from two of its branches."""

from __future__ import annotations

import torch
from torch import nn

from respira.models.layers import conv_bn_relu, halvings, normalize_bins, pool_frames
from respira.models.registry import register


class CompactBranch(nn.Module):
    """Features [b, in_channels, n_bins, frames] -> embedding [b, channels[-1]].

    Per-bin BatchNorm, a stride-2 3x3 conv, then for each further width a 2x2 average pool
    (frequency pooled only while >= 2 bins remain) and a 3x3 conv; mean over frequency,
    max + mean over time. Time is reduced 2 ** len(channels) times (16 frames -> 1 by default).
    """

    def __init__(self, *, in_channels: int, n_bins: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must name at least one width")
        freq = halvings(n_bins, len(channels))
        self.bn0 = nn.BatchNorm2d(n_bins)
        self.stem = conv_bn_relu(in_channels, channels[0], stride=(freq[0], 2))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.AvgPool2d((f, 2)), conv_bn_relu(c_in, c_out))
            for f, c_in, c_out in zip(freq[1:], channels, channels[1:])
        )
        self.dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(normalize_bins(self.bn0, x))
        for block in self.blocks:
            x = block(x)
        return pool_frames(x.mean(dim=2))


@register("compact_cnn")
class CompactCNN(nn.Module):
    """Small, fast CNN (~240k parameters by default): [b, in_channels, n_bins, frames >= 16] -> logits [b, n_classes].

    channels: conv widths, one 2x downsampling each; dropout: before the linear head.
    """

    def __init__(
        self,
        *,
        n_classes: int,
        in_channels: int = 1,
        n_bins: int = 64,
        channels: tuple[int, ...] = (32, 64, 128, 128),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.branch = CompactBranch(in_channels=in_channels, n_bins=n_bins, channels=tuple(channels))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.branch.dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.branch(x)))


@register("dual")
class DualCNN(nn.Module):
    """Two compact branches, one for MFCCs and one for log-mel, embeddings concatenated.

    forward(mfcc [b, c_mfcc, n_mfcc, frames], logmel [b, c_mel, n_mels, frames']) -> logits [b, n_classes].
    n_bins and in_channels: a pair (mfcc, logmel), or one int used for both.
    Build with build_model("dual", n_classes=..., in_channels=(3, 1), n_bins=(20, 64)).
    """

    def __init__(
        self,
        *,
        n_classes: int,
        in_channels: int | tuple[int, int] = 1,
        n_bins: int | tuple[int, int] = 64,
        channels: tuple[int, ...] = (32, 64, 128, 128),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        (c_mfcc, c_mel), (b_mfcc, b_mel) = _pair(in_channels, "in_channels"), _pair(n_bins, "n_bins")
        self.mfcc = CompactBranch(in_channels=c_mfcc, n_bins=b_mfcc, channels=tuple(channels))
        self.logmel = CompactBranch(in_channels=c_mel, n_bins=b_mel, channels=tuple(channels))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.mfcc.dim + self.logmel.dim, n_classes)

    def forward(self, mfcc: torch.Tensor, logmel: torch.Tensor) -> torch.Tensor:
        embedding = torch.cat([self.mfcc(mfcc), self.logmel(logmel)], dim=1)
        return self.head(self.dropout(embedding))


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair (mfcc, logmel), got {value!r}")
    return int(value[0]), int(value[1])
