"""Log-mel and MFCC features in torch, equal to librosa within float32 rounding.

``FeatureConfig`` names every parameter. ``FeatureExtractor`` holds the window, the mel
basis (``mel_filters``, equal to ``librosa.filters.mel``) and the DCT matrix as buffers and runs
on CPU or CUDA;
``log_mel`` / ``mfcc`` / ``features`` use one cached extractor per (config, device).
Signals are processed in spans of whole frames (on CPU by a small thread pool), so memory
stays bounded and the result equals the one-shot computation.

Reference numerics (librosa, same parameters)::

    S = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, win_length=win,
            window="hann", center=True, pad_mode="constant", power=2.0, n_mels=n_mels,
            fmin=fmin, fmax=fmax, htk=False, norm="slaney")
    log_mel = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc, dct_type=2, norm="ortho")
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from respira.errors import AudioError, ConfigError

AMIN = 1e-10
"""Power floor before the log (librosa's ``amin``); ``ref`` is 1.0, so dB are absolute."""

DELTA_WIDTH = 9
"""Frames in the Savitzky-Golay window of ``librosa.feature.delta``."""

SERIAL_ELEMENTS = 2**15
"""Elements (frames x n_fft x batch, down to one frame) of one CPU span of a batch. Spans this
small keep torch's element-wise work on the calling thread, so the pool workers never wake
OpenMP threads: with one big op per step, the per-op wake-ups made log_mel slower than librosa
whenever other processes kept the cores busy. For batches of windows (the detector) 2**15
scored 970x real time against 700x at 2**17 on an idle 2-core machine."""

SINGLE_SIGNAL_ELEMENTS = 2**17
"""The same for one long signal (batch 1): 256 frames at n_fft 512 computed an hour of 16 kHz
audio in 0.35 s against 0.43 s at 2**15 on an idle 2-core machine."""

CUDA_SPAN_ELEMENTS = 2**22
"""STFT bins (batch x frames x frequencies) per span on CUDA; bounds the working memory."""

KIND_MAPS: dict[str, tuple[str, ...]] = {
    "logmel": ("logmel",),
    "mfcc": ("mfcc",),
    "dual": ("mfcc", "logmel"),
}
"""Feature kind -> the feature maps it returns, in order."""

_CROP_OFFSETS = {
    "center": lambda slack, rng: slack // 2,
    "start": lambda slack, rng: 0,
    "random": lambda slack, rng: int(rng.integers(0, slack + 1)),
}
"""crop_or_pad mode -> where the kept part starts (crop) or the signal lands (pad)."""

Signal = Union[np.ndarray, torch.Tensor]
Features = Union[torch.Tensor, tuple[torch.Tensor, ...]]

_INT_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc", "deltas")
_FLOAT_FIELDS = ("fmin", "fmax", "top_db")


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the feature front end; saved inside each model bundle.

    kind: "logmel" (bins = n_mels), "mfcc" (bins = n_mfcc) or "dual" (both, as a tuple).
    fmax: None means sample_rate / 2. top_db: None means no clamp below the item's max.
    deltas: 0, 1 or 2 extra channels (delta, delta-delta) after the static features.
    """

    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float | None = None
    top_db: float | None = 80.0
    n_mfcc: int = 40
    deltas: int = 0

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def mel_fmax(self) -> float:
        """Upper edge of the mel filter bank in Hz."""
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

    @property
    def channels(self) -> int:
        """Channels of each feature map: the static features plus the deltas."""
        return 1 + self.deltas

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureConfig:
        """Build from a mapping (YAML, bundle); unknown keys and bad values -> ConfigError."""
        from respira.settings import check_keys

        return cls(**check_keys(cls, d, prefix="features"))


def _validate(cfg: FeatureConfig) -> None:
    for name in _INT_FIELDS:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"feature config: {name} must be an integer, got {value!r}")
    for name in _FLOAT_FIELDS:
        value = getattr(cfg, name)
        nullable = name != "fmin"
        if (value is None and nullable) or (
            isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        ):
            continue
        raise ConfigError(f"feature config: {name} must be a number, got {value!r}")
    nyquist = cfg.sample_rate / 2
    rules = [
        (isinstance(cfg.kind, str) and cfg.kind in KIND_MAPS,
         f"kind must be one of {', '.join(KIND_MAPS)}, got {cfg.kind!r}"),
        (cfg.sample_rate > 0, f"sample_rate must be > 0, got {cfg.sample_rate}"),
        (cfg.n_fft > 0, f"n_fft must be > 0, got {cfg.n_fft}"),
        (0 < cfg.win_length <= cfg.n_fft,
         f"win_length ({cfg.win_length}) must be in 1..n_fft ({cfg.n_fft})"),
        (cfg.hop_length > 0, f"hop_length must be > 0, got {cfg.hop_length}"),
        (cfg.n_mels > 0, f"n_mels must be > 0, got {cfg.n_mels}"),
        (0 <= cfg.fmin < nyquist, f"fmin ({cfg.fmin}) must be in 0..sample_rate/2 ({nyquist:g})"),
        (cfg.fmax is None or cfg.fmin < cfg.fmax <= nyquist,
         f"fmax ({cfg.fmax}) must be in fmin ({cfg.fmin})..sample_rate/2 ({nyquist:g})"),
        (cfg.top_db is None or cfg.top_db > 0, f"top_db must be > 0 or None, got {cfg.top_db}"),
        (0 < cfg.n_mfcc <= cfg.n_mels, f"n_mfcc ({cfg.n_mfcc}) must be in 1..n_mels ({cfg.n_mels})"),
        (cfg.deltas in (0, 1, 2), f"deltas must be 0, 1 or 2, got {cfg.deltas}"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"feature config: {message}")


def mel_frequencies(n: int, *, fmin: float, fmax: float) -> np.ndarray:
    """[n] Hz evenly spaced on the Slaney mel scale from fmin to fmax (``librosa.mel_frequencies``, htk=False)."""
    return _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n))


def mel_filters(*, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 triangular Slaney-normalised mel filters, equal to
    ``librosa.filters.mel(htk=False, norm="slaney")``; computed here so inference needs no librosa."""
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax)
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, freqs)
    weights = np.zeros((n_mels, len(freqs)), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2: n_mels + 2] - edges[:n_mels]))[:, None]
    return weights


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] float64 orthonormal DCT-II (``scipy.fft.dct(type=2, norm="ortho")`` of the identity, first n_out rows)."""
    k, n = np.arange(n_out)[:, None], np.arange(n_in)[None, :]
    d = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2 * n_in))
    d[0] /= np.sqrt(2.0)
    return d


_MEL_BREAK_HZ, _MEL_HZ_PER_MEL, _MEL_LOG_STEP = 1000.0, 200.0 / 3, np.log(6.4) / 27.0
"""The Slaney mel scale: linear below 1 kHz, logarithmic above."""


def _hz_to_mel(hz: float) -> float:
    if hz < _MEL_BREAK_HZ:
        return hz / _MEL_HZ_PER_MEL
    return _MEL_BREAK_HZ / _MEL_HZ_PER_MEL + np.log(hz / _MEL_BREAK_HZ) / _MEL_LOG_STEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    brk = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL
    return np.where(mels >= brk, _MEL_BREAK_HZ * np.exp(_MEL_LOG_STEP * (mels - brk)), _MEL_HZ_PER_MEL * mels)


def n_frames(n_samples: int, cfg: FeatureConfig) -> int:
    """Frames for ``n_samples`` (>= 1) samples with centred, zero-padded framing (librosa's)."""
    if n_samples < 1:
        raise AudioError(f"cannot compute features of {n_samples} samples")
    pad = cfg.n_fft // 2
    return 1 + (n_samples + 2 * pad - cfg.n_fft) // cfg.hop_length


def _savgol_deriv(width: int, order: int) -> np.ndarray:
    """Weights w [width] with delta[t] = sum_k w[k] x[t - width//2 + k]: the ``order``-th
    derivative at the centre of the least-squares polynomial of degree ``order``."""
    k = np.arange(width, dtype=np.float64) - width // 2
    vander = k[:, None] ** np.arange(order + 1)
    return np.linalg.pinv(vander)[order] * float(np.prod(np.arange(1, order + 1)))


def _delta(x: torch.Tensor, order: int) -> torch.Tensor:
    """x [batch, bins, frames] -> ``librosa.feature.delta(x, width=9, order=order, mode="interp")``.

    Equal to librosa when frames >= 9: with polyorder == order, "interp" mode makes every
    edge frame equal the nearest interior value, which is what replicate padding gives.
    Shorter inputs use the widest odd window that fits (zeros if none fits), where librosa
    raises instead.
    """
    frames = x.shape[-1]
    width = min(DELTA_WIDTH, frames if frames % 2 else frames - 1)
    if width <= order:
        return torch.zeros_like(x)
    weights = torch.tensor(_savgol_deriv(width, order), dtype=x.dtype, device=x.device)
    batch, bins, _ = x.shape
    valid = F.conv1d(x.reshape(batch * bins, 1, frames), weights.view(1, 1, width))
    return F.pad(valid, (width // 2, width // 2), mode="replicate").reshape(batch, bins, frames)


def _mel_span(
    y: torch.Tensor,
    span: tuple[int, int],
    cfg: FeatureConfig,
    window: torch.Tensor,
    basis: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """Write the mel power of frames [f0, f1) of y [batch, samples] into out [batch, n_mels, frames].

    basis: the mel basis expanded to [batch, n_mels, freqs]. torch.stft runs with
    center=False on a span padded here, which equals center=True, pad_mode="constant".
    """
    f0, f1 = span
    n = y.shape[-1]
    start = f0 * cfg.hop_length - cfg.n_fft // 2
    stop = start + (f1 - f0 - 1) * cfg.hop_length + cfg.n_fft
    segment = y[:, max(start, 0) : min(stop, n)].to(torch.float64)
    if start < 0 or stop > n:  # centred framing: zeros beyond both ends
        segment = F.pad(segment, (max(-start, 0), max(stop - n, 0)))
    spec = torch.stft(
        segment, cfg.n_fft, cfg.hop_length, win_length=cfg.n_fft, window=window,
        center=False, return_complex=True,
    )  # [batch, freqs, frames]
    power = spec.real.square().addcmul_(spec.imag, spec.imag).to(torch.float32)
    torch.bmm(basis, power, out=out[:, :, f0:f1])


class FeatureExtractor(torch.nn.Module):
    """The feature front end as a module; forward(y [batch, samples]) -> like ``features``.

    Buffers: ``window`` [n_fft] float64 (periodic Hann of win_length, zero-padded centred),
    ``mel_basis`` [n_mels, n_fft//2+1] (slaney), ``dct`` [n_mfcc, n_mels] (type II, ortho).
    The log-mel is computed in spans of ``span_frames`` frames (None: sized per device), on
    CPU by ``torch.get_num_threads()`` pool threads; results do not depend on the span size.
    Not differentiable.
    """

    def __init__(self, cfg: FeatureConfig, *, span_frames: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.span_frames = span_frames
        # The STFT runs in float64: torch's float32 FFT is several times less accurate than
        # numpy's, enough to move bins 60-80 dB below the peak by > 1e-3 dB from librosa.
        # Power, mel and log are float32 like librosa's.
        window = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
        left = (cfg.n_fft - cfg.win_length) // 2
        self.register_buffer("window", F.pad(window, (left, cfg.n_fft - cfg.win_length - left)))
        mel = mel_filters(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.mel_fmax)
        self.register_buffer("mel_basis", torch.from_numpy(mel))
        self.register_buffer("dct", torch.from_numpy(dct_matrix(cfg.n_mfcc, cfg.n_mels).astype(np.float32)))

    def log_mel(self, y: torch.Tensor) -> torch.Tensor:
        """y [batch, samples] float32 -> log-mel [batch, n_mels, frames] in dB (ref 1.0)."""
        cfg = self.cfg
        batch, n = _check_batch(y)
        frames = n_frames(n, cfg)
        step = self._span_frames(batch, y.device)
        db = torch.empty(batch, cfg.n_mels, frames, dtype=torch.float32, device=y.device)
        window, basis = self.window, self.mel_basis.expand(batch, -1, -1)
        starts = iter(range(0, frames, step))
        inference = torch.is_inference_mode_enabled()  # thread-local: carried into the workers

        def work() -> None:
            with torch.inference_mode(inference), torch.no_grad():
                for f0 in starts:  # shared: each worker takes the next span when it is free
                    _mel_span(y, (f0, min(frames, f0 + step)), cfg, window, basis, db)

        workers = min(torch.get_num_threads(), -(-frames // step)) if y.device.type == "cpu" else 1
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                for done in [pool.submit(work) for _ in range(workers)]:
                    done.result()
        else:
            work()
        db.clamp_(min=AMIN).log10_().mul_(10.0)
        if cfg.top_db is not None:
            torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - cfg.top_db, out=db)
        return db

    def _span_frames(self, batch: int, device: torch.device) -> int:
        if self.span_frames is not None:
            return self.span_frames
        if device.type == "cpu":
            return max(1, (SINGLE_SIGNAL_ELEMENTS if batch == 1 else SERIAL_ELEMENTS) // (batch * self.cfg.n_fft))
        return max(1, CUDA_SPAN_ELEMENTS // (batch * (self.cfg.n_fft // 2 + 1)))

    def mfcc(self, y: torch.Tensor) -> torch.Tensor:
        """y [batch, samples] -> MFCC [batch, n_mfcc, frames] of the log-mel."""
        return self._mfcc_of(self.log_mel(y))

    def _mfcc_of(self, log_mel: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.dct, log_mel)

    def forward(self, y: torch.Tensor) -> Features:
        """y [batch, samples] -> [batch, 1 + deltas, bins, frames], a tuple (mfcc, logmel) for "dual"."""
        log_mel = self.log_mel(y)
        maps = {"logmel": log_mel}
        if "mfcc" in KIND_MAPS[self.cfg.kind]:
            maps["mfcc"] = self._mfcc_of(log_mel)
        outputs = tuple(self._with_deltas(maps[name]) for name in KIND_MAPS[self.cfg.kind])
        return outputs[0] if len(outputs) == 1 else outputs

    def _with_deltas(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x] + [_delta(x, order) for order in range(1, self.cfg.deltas + 1)], dim=1)


def _check_batch(y: torch.Tensor) -> tuple[int, int]:
    if y.ndim != 2:
        raise AudioError(f"expected audio as [batch, samples], got shape {tuple(y.shape)}")
    if y.shape[0] < 1 or y.shape[1] < 1:
        raise AudioError(f"cannot compute features of empty audio (shape {tuple(y.shape)})")
    return int(y.shape[0]), int(y.shape[1])


def _as_batch(y: Signal) -> tuple[torch.Tensor, bool]:
    """Audio as a float32 tensor [batch, samples] and whether the input was one signal."""
    x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)) if isinstance(y, np.ndarray) else y
    if not isinstance(x, torch.Tensor):
        raise AudioError(f"expected audio as a numpy array or torch tensor, got {type(y).__name__}")
    x = x.to(torch.float32)
    if x.ndim not in (1, 2):
        raise AudioError(f"expected audio as [samples] or [batch, samples], got shape {tuple(x.shape)}")
    return (x.unsqueeze(0), True) if x.ndim == 1 else (x, False)


@functools.lru_cache(maxsize=16)
def _extractor(cfg: FeatureConfig, device: torch.device) -> FeatureExtractor:
    return FeatureExtractor(cfg).to(device)


def log_mel(y: Signal, cfg: FeatureConfig) -> torch.Tensor:
    """y [samples] or [batch, samples] at cfg.sample_rate -> [(batch,) n_mels, frames] in dB.

    top_db clamps each item of a batch below its own maximum. Runs on the device of a tensor input.
    """
    x, single = _as_batch(y)
    out = _extractor(cfg, x.device).log_mel(x)
    return out[0] if single else out


def mfcc(y: Signal, cfg: FeatureConfig) -> torch.Tensor:
    """y [samples] or [batch, samples] -> [n_mfcc, frames] or [batch, n_mfcc, frames]."""
    x, single = _as_batch(y)
    out = _extractor(cfg, x.device).mfcc(x)
    return out[0] if single else out


def features(y: Signal, cfg: FeatureConfig) -> Features:
    """The model input: y [samples] or [batch, samples] -> [batch, 1 + deltas, bins, frames].

    bins = n_mels for kind "logmel", n_mfcc for "mfcc"; kind "dual" returns (mfcc, logmel).
    """
    x, _ = _as_batch(y)
    return _extractor(cfg, x.device)(x)


def crop_or_pad(
    y: np.ndarray, *, length: int, mode: str = "center", rng: np.random.Generator | None = None
) -> np.ndarray:
    """y [..., samples] -> [..., length]: crop, or pad with zeros, along the last axis.

    mode "center": keep the middle / pad both sides equally; "start": keep the start / pad
    at the end; "random": a random crop or placement (needs ``rng``). Crops are views.
    """
    if length < 1:
        raise ConfigError(f"crop_or_pad: length must be >= 1, got {length}")
    if mode not in _CROP_OFFSETS:
        raise ConfigError(f"crop_or_pad: mode must be one of {', '.join(_CROP_OFFSETS)}, got {mode!r}")
    if mode == "random" and rng is None:
        raise ConfigError("crop_or_pad: mode 'random' needs an rng")
    n = y.shape[-1]
    slack = abs(n - length)
    offset = _CROP_OFFSETS[mode](slack, rng)
    if n >= length:
        return y[..., offset : offset + length]
    widths = [(0, 0)] * (y.ndim - 1) + [(offset, length - n - offset)]
    return np.pad(y, widths)
