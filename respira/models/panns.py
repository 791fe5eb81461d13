"""PANN-style CNNs (Kong et al. 2020, "PANNs: Large-Scale Pretrained Audio Neural Networks").

Layer names and shapes match the published AudioSet checkpoints (Cnn6/Cnn10/Cnn14_mAP=*.pth)
from `bn0` on, so `load_pretrained` fills them: `bn0` (BatchNorm over 64 mel bins),
`conv_block{i}.conv1/bn1[/conv2/bn2]`, `fc1`. Our models take features from respira.features
instead of the checkpoint's own STFT/mel front end (`spectrogram_extractor.*`,
`logmel_extractor.*`), and end in `head` (n_classes) instead of `fc_audioset` (527 classes).
Pretrained weights expect 64 log-mel bins; with other n_bins, `bn0` is sized to match and is
not loaded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from respira.models.layers import halvings, normalize_bins, pool_frames
from respira.models.registry import register


class ConvBlock(nn.Module):
    """Two 3x3 conv (no bias) + BN + ReLU, then average pooling (PANNs' ConvBlock)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class ConvBlock5x5(nn.Module):
    """One 5x5 conv (no bias) + BN + ReLU, then average pooling (PANNs' ConvBlock5x5, used by Cnn6)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=pool)


class PannCNN(nn.Module):
    """A PANNs CNN over features [b, in_channels, n_bins, frames] -> logits [b, n_classes].

    block: ConvBlock or ConvBlock5x5; widths: output channels of conv_block1..N; the last
    `unpooled` blocks do not pool. Frames are halved once per pooling block (Cnn14: >= 32 frames).
    """

    def __init__(
        self,
        *,
        n_classes: int,
        in_channels: int,
        n_bins: int,
        block: type[ConvBlock] | type[ConvBlock5x5],
        widths: tuple[int, ...],
        unpooled: int = 0,
    ) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(n_bins)
        pooled = len(widths) - unpooled
        freq = halvings(n_bins, pooled) + [1] * unpooled
        self.pools = [(2, f) for f in freq[:pooled]] + [(1, 1)] * unpooled  # (time, frequency), as PANNs
        self.block_names = [f"conv_block{i}" for i in range(1, len(widths) + 1)]
        for name, c_in, c_out in zip(self.block_names, (in_channels, *widths), widths):
            self.add_module(name, block(c_in, c_out))
        self.fc1 = nn.Linear(widths[-1], widths[-1])
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = normalize_bins(self.bn0, x).transpose(2, 3)  # PANNs' layout: [b, c, frames, bins]
        for name, pool in zip(self.block_names, self.pools):
            x = F.dropout(getattr(self, name)(x, pool), p=0.2, training=self.training)
        x = F.dropout(pool_frames(x.mean(dim=3)), p=0.5, training=self.training)
        x = F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training)
        return self.head(x)


@register("cnn6")
def cnn6(*, n_classes: int, in_channels: int = 1, n_bins: int = 64) -> PannCNN:
    """PANNs Cnn6 (~4.8M parameters): four 5x5 conv blocks 64-512, fc1 512."""
    return PannCNN(n_classes=n_classes, in_channels=in_channels, n_bins=n_bins, block=ConvBlock5x5, widths=(64, 128, 256, 512))


@register("cnn10")
def cnn10(*, n_classes: int, in_channels: int = 1, n_bins: int = 64) -> PannCNN:
    """PANNs Cnn10 (~5.2M parameters): four double-3x3 conv blocks 64-512, fc1 512."""
    return PannCNN(n_classes=n_classes, in_channels=in_channels, n_bins=n_bins, block=ConvBlock, widths=(64, 128, 256, 512))


@register("cnn14")
def cnn14(*, n_classes: int, in_channels: int = 1, n_bins: int = 64) -> PannCNN:
    """PANNs Cnn14 (~80M parameters): six double-3x3 conv blocks 64-2048 (the last unpooled), fc1 2048."""
    return PannCNN(
        n_classes=n_classes,
        in_channels=in_channels,
        n_bins=n_bins,
        block=ConvBlock,
        widths=(64, 128, 256, 512, 1024, 2048),
        unpooled=1,
    )
