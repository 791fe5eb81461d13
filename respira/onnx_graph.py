"""The raw-audio ONNX graph as a torch module: audio [batch, samples] -> the clip's probabilities.

`ClipGraph` does to each clip what `respira predict` does (`Model.predict_proba`) in operators
that trace to plain ONNX with a dynamic samples axis: the windows of
`respira.inference.clip_windows` (Shape, Range, Gather), the features of every window
(`ConvFrontEnd`: the STFT as one strided Conv with fixed cos/sin kernels, the mel bank as a
MatMul, Log, ReduceMax), the ensemble, and the task's pooling (`Task.pool`). respira.export
traces it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from respira.features import AMIN, FeatureConfig, FeatureExtractor
from respira.tasks import TASKS


class ConvFrontEnd(FeatureExtractor):
    """`FeatureExtractor` whose log-mel runs the STFT as a Conv1d (float32; torch.stft runs in float64).

    The kernels are the cos and sin rows of the DFT times the extractor's window, cut to its
    win_length non-zero taps (the zeros around them shift the padding instead); the mel basis
    is applied to both halves of the squared output at once. MFCC, deltas and "dual" come from
    `FeatureExtractor.forward` as they are.
    """

    def __init__(self, cfg: FeatureConfig) -> None:
        super().__init__(cfg)
        left = (cfg.n_fft - cfg.win_length) // 2
        taps = np.arange(left, left + cfg.win_length)
        angle = 2 * np.pi * np.arange(cfg.n_fft // 2 + 1)[:, None] * taps / cfg.n_fft
        kernels = np.concatenate([np.cos(angle), np.sin(angle)]) * self.window.numpy()[taps]
        self.register_buffer("dft", torch.from_numpy(kernels[:, None].astype(np.float32)))
        self.register_buffer("mel_pair", torch.cat([self.mel_basis, self.mel_basis], dim=1))
        pad = cfg.n_fft // 2
        self.pads = (pad - left, pad - (cfg.n_fft - cfg.win_length - left))

    def log_mel(self, y: torch.Tensor) -> torch.Tensor:
        """y [batch, samples] -> log-mel [batch, n_mels, frames] in dB, as `FeatureExtractor.log_mel`."""
        spectrum = F.conv1d(F.pad(y[:, None], self.pads), self.dft, stride=self.cfg.hop_length)
        db = 10 * torch.log10(torch.matmul(self.mel_pair, spectrum.square()).clamp(min=AMIN))
        if self.cfg.top_db is None:
            return db
        return torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.cfg.top_db)


def clip_windows(audio: torch.Tensor, *, length: int) -> torch.Tensor:
    """audio [batch, samples] -> windows [batch, n, length], each row cut like
    `respira.inference.clip_windows`: a clip shorter than `length` zero-padded on both sides
    (centred), a longer one in windows every length // 2 samples, the last ending at its end.
    """
    samples = torch._shape_as_tensor(audio)[1]  # a tensor: the exporter records the arithmetic on it
    short = torch.clamp(length - samples, min=0)
    y = F.pad(audio, [short // 2, short - short // 2])
    last = torch.clamp(samples - length, min=0)  # where the last window starts
    hop = max(1, length // 2)
    starts = torch.minimum(torch.arange(1 + (last + hop - 1) // hop) * hop, last)
    return y[:, starts[:, None] + torch.arange(length)]


def pool(p: torch.Tensor, *, task: str, pooling: str, positive_index: int | None) -> torch.Tensor:
    """Window outputs [batch, windows, outputs] -> [batch, outputs], as `Task.pool` per clip: the mean,
    or under "max" the row of the window most sure of its class (exclusive classes; binary: the
    highest positive-class probability) or the maximum per output (the other tasks)."""
    if pooling != "max":
        return p.mean(dim=1)
    if not TASKS[task].exclusive:
        return p.amax(dim=1)
    size = torch._shape_as_tensor(p)
    key = p[:, :, positive_index] if positive_index is not None else p.amax(dim=2)
    best = key.argmax(dim=1) + torch.arange(size[0]) * size[1]  # the first on a tie, like numpy
    return p.reshape(-1, p.shape[2])[best]


class ClipGraph(nn.Module):
    """forward(audio [batch, samples] at cfg.sample_rate) -> the pooled output of each clip [batch, outputs].

    The clips of one batch have the same length. ensemble: features -> probabilities
    (`respira.inference.Ensemble`); length: the model's clip_samples.
    """

    def __init__(self, ensemble: nn.Module, *, cfg: FeatureConfig, length: int, task: str, pooling: str,
                 positive_index: int | None) -> None:
        super().__init__()
        self.front_end = ConvFrontEnd(cfg)
        self.ensemble = ensemble
        self.length, self.task, self.pooling, self.positive_index = length, task, pooling, positive_index

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        windows = clip_windows(audio, length=self.length)
        maps = self.front_end(windows.reshape(-1, self.length))
        outputs = self.ensemble(*(maps if isinstance(maps, tuple) else (maps,)))
        return pool(outputs.reshape(audio.shape[0], -1, outputs.shape[-1]), task=self.task, pooling=self.pooling,
                    positive_index=self.positive_index)
