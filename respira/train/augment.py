"""The preprocessing pipeline: an explicit list of named steps, each marked augmentation or not.

Training runs every step; validation, testing and inference run only the steps that are
not augmentations (fit the clip to the window, compute the features), so they share one
path. A batch is (x, y): x is a list of clips, then a waveform tensor [batch, samples],
then the features [batch, channels, bins, frames] (a tuple of them for "dual"); y is the
float target matrix [batch, outputs], which only MixUp changes. Every random choice comes
from the numpy Generator passed in, so a batch is reproducible from its seed.

Class balance (`sample_weights`, `class_weights`) lives here too: it is the other knob that
changes what the model sees in training and nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from respira.config import AugmentConfig
from respira.errors import ConfigError
from respira.features import FeatureConfig, crop_or_pad, features
from respira.tasks import TASKS

X = Union[list, torch.Tensor, tuple]
StepFn = Callable[[X, torch.Tensor, np.random.Generator], tuple[X, torch.Tensor]]
_SILENT_FLOOR = 1e-4  # -80 dBFS: the pad level of a clip that is digital silence throughout


@dataclass(frozen=True)
class Step:
    """One named preprocessing step; `augment` steps run in training only."""

    name: str
    augment: bool
    fn: StepFn


class Pipeline:
    """Steps applied in order: `pipeline(clips, y, train=..., rng=...)` -> (model inputs tuple, y)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = tuple(steps)

    def __repr__(self) -> str:
        return "Pipeline(" + ", ".join(f"{s.name}{'*' if s.augment else ''}" for s in self.steps) + ")"

    def __call__(self, clips: Sequence[np.ndarray], y: torch.Tensor, *, train: bool,
                 rng: np.random.Generator | None = None) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """clips: float32 waveforms of any length; y [batch, outputs]. Returns (inputs, y), where
        inputs is the tuple of feature maps the model takes. `rng` is needed when `train`."""
        if train and rng is None:
            raise ValueError("a training pass needs an rng")
        x: X = list(clips)
        with torch.no_grad():
            for step in self.steps:
                if train or not step.augment:
                    x, y = step.fn(x, y, rng)
        return (x if isinstance(x, tuple) else (x,)), y


def build_pipeline(aug: AugmentConfig, feats: FeatureConfig, *, clip_s: float,
                   device: torch.device | str = "cpu", eventless: int | None = None) -> Pipeline:
    """The steps for `aug` (those it switches off are left out), the window and the features.

    eventless: the output index of a class that marks the absence of an event (the negative of
    a derived binary task); with crop "loudest" its rows are cropped anywhere, since every
    window of them is a true negative, quiet stretches included.
    """
    length = int(round(clip_s * feats.sample_rate))
    device = torch.device(device)
    if aug.pad == "background" and eventless is None:
        raise ConfigError("augment.pad: 'background' needs a derived binary task (data.positive / data.negative)")
    mixup = functools.partial(_mixup, alpha=aug.mixup_alpha, p=aug.mixup_p)
    loudest = aug.crop == "loudest"
    wanted: list[tuple[bool, Step]] = [
        (aug.pad != "zeros", Step("pad", True, lambda x, y, rng: (_pad(
            x, rng, length=length, frame=feats.sample_rate // 50, fill=aug.pad,
            placed=_placed_at_random(y, shift=aug.shift, loudest=loudest, eventless=eventless),
            pool=_eventless_rows(y, eventless)), y))),
        (aug.shift, Step("shift", True, lambda x, y, rng: (_shift(x, y, rng, length=length, loudest=loudest,
                                                                   eventless=eventless), y))),
        (loudest, Step("loudest", False, lambda x, y, rng: ([_loudest(c, length=length) for c in x], y))),
        (True, Step("fit", False, lambda x, y, rng: (_fit(x, length=length, device=device), y))),
        (aug.pitch_shift > 0, Step("pitch_shift", True, lambda x, y, rng: (_pitch_shift(x, rng, semitones=aug.pitch_shift), y))),
        (aug.gain_db > 0, Step("gain", True, lambda x, y, rng: (_gain(x, rng, db=aug.gain_db), y))),
        (aug.background_p > 0 and eventless is not None,
         Step("background", True, lambda x, y, rng: (_background(x, y, rng, eventless=eventless, snr_db=aug.background_snr_db,
                                                                 p=aug.background_p), y))),
        (aug.noise_p > 0, Step("noise", True, lambda x, y, rng: (_noise(x, rng, snr_db=aug.noise_snr_db, p=aug.noise_p), y))),
        (aug.mixup_on == "waveform" and aug.mixup_p > 0 and aug.mixup_alpha > 0, Step("mixup", True, mixup)),
        (True, Step("features", False, lambda x, y, rng: (features(x, feats), y))),
        (aug.time_stretch > 0, Step("time_stretch", True, lambda x, y, rng: (_per_map(x, _time_stretch, rng, amount=aug.time_stretch), y))),
        (aug.spec_time_masks > 0 and aug.spec_time_width > 0,
         Step("time_masks", True, lambda x, y, rng: (_time_masks(x, rng, count=aug.spec_time_masks, width=aug.spec_time_width), y))),
        (aug.spec_freq_masks > 0 and aug.spec_freq_width > 0,
         Step("freq_masks", True, lambda x, y, rng: (_per_map(x, _freq_masks, rng, count=aug.spec_freq_masks, width=aug.spec_freq_width), y))),
        (aug.mixup_on == "features" and aug.mixup_p > 0 and aug.mixup_alpha > 0, Step("mixup", True, mixup)),
    ]
    return Pipeline([step for enabled, step in wanted if enabled])


# --- waveform steps: x [batch, samples] ----------------------------------------------------------


def _shift(clips: list[np.ndarray], y: torch.Tensor, rng: np.random.Generator, *, length: int, loudest: bool,
           eventless: int | None) -> list[np.ndarray]:
    """Random crops (or placements) of `length`; with `loudest`, crops that keep each clip's loudest
    frame, except for rows of the `eventless` class."""
    anywhere = _placed_at_random(y, shift=True, loudest=loudest, eventless=eventless)
    return [crop_or_pad(c, length=length, mode="random", rng=rng) if a else _loudest(c, length=length, rng=rng)
            for c, a in zip(clips, anywhere)]


def _placed_at_random(y: torch.Tensor, *, shift: bool, loudest: bool, eventless: int | None) -> np.ndarray:
    """[batch] bool: the rows that `shift` crops or places at random (the others are centred)."""
    if not shift or (loudest and eventless is None):
        return np.zeros(len(y), bool)
    return np.ones(len(y), bool) if not loudest else y[:, eventless].cpu().numpy() > 0.5


def _eventless_rows(y: torch.Tensor, eventless: int | None) -> np.ndarray:
    """Indices of the rows that are (mostly) the `eventless` class; none without one."""
    return np.flatnonzero(y[:, eventless].cpu().numpy() > 0.5) if eventless is not None else np.zeros(0, int)


def _pad(clips: list[np.ndarray], rng: np.random.Generator, *, length: int, frame: int, fill: str,
         placed: np.ndarray, pool: np.ndarray) -> list[np.ndarray]:
    """Clips shorter than `length` set into a window of `length` whose rest is `fill` ("noise":
    white noise; "background": a random stretch of a `pool` clip other than itself, white noise
    when there is none) at the clip's floor level (`_floor`) +-6 dB, so never all digital silence.
    Placed at random for the `placed` rows, else centred, as the shift and fit steps would place them."""
    out = []
    for i, clip in enumerate(clips):
        n = len(clip)
        if n >= length:
            out.append(clip)
            continue
        offset = int(rng.integers(0, length - n + 1)) if placed[i] else (length - n) // 2
        others = pool[pool != i] if fill == "background" else pool[:0]
        bed = _stretch(clips[int(rng.choice(others))], rng, length=length) if len(others) else None
        if bed is None:
            bed = rng.standard_normal(length, dtype=np.float32)
        level = _floor(clip, frame=frame) * 10 ** (rng.uniform(-6.0, 6.0) / 20)
        window = (bed * np.float32(level)).astype(np.float32)
        window[offset : offset + n] = clip
        out.append(window)
    return out


def _stretch(clip: np.ndarray, rng: np.random.Generator, *, length: int) -> np.ndarray | None:
    """A random [length] stretch of `clip` (repeated if shorter) scaled to RMS 1; None if silent."""
    clip = np.asarray(clip, np.float32)
    if len(clip) < length:
        clip = np.tile(clip, -(-length // max(1, len(clip))))
    start = int(rng.integers(0, len(clip) - length + 1))
    stretch = clip[start : start + length]
    rms = float(np.sqrt(np.mean(np.square(stretch, dtype=np.float64))))
    return stretch / np.float32(rms) if rms > 0 else None


def _floor(clip: np.ndarray, *, frame: int) -> float:
    """The clip's floor level: the 10th percentile of its `frame`-sample frame RMS, over the frames
    that are not digital silence (-80 dBFS when all of it is)."""
    y = np.asarray(clip, np.float64)
    frames = y[: len(y) // frame * frame].reshape(-1, frame) if len(y) >= frame else y[None]
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    rms = rms[rms > 0]
    return float(np.percentile(rms, 10)) if len(rms) else _SILENT_FLOOR


def _loudest(clip: np.ndarray, *, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """[length] samples of `clip` that contain its loudest 20-ms frame, away from the window's
    edges by an eighth of the window: at a random such position with `rng`, else centred on it.
    Clips no longer than `length` are returned as they are (the fit step pads them)."""
    n = len(clip)
    if n <= length:
        return clip
    frame = max(1, length // 50)
    energy = np.square(clip[: n // frame * frame]).reshape(-1, frame).sum(axis=1)
    peak = int(np.argmax(energy)) * frame + frame // 2
    margin = length // 8
    lo, hi = max(0, peak + margin - length), min(n - length, peak - margin)
    if hi < lo:
        lo = hi = min(max(peak - length // 2, 0), n - length)
    start = int(rng.integers(lo, hi + 1)) if rng is not None else min(max(peak - length // 2, lo), hi)
    return clip[start : start + length]


def _fit(clips: list[np.ndarray], *, length: int, device: torch.device) -> torch.Tensor:
    """Clips -> [batch, length] on `device`: centre crop or centred zero padding."""
    batch = np.stack([crop_or_pad(np.asarray(c, np.float32), length=length, mode="center") for c in clips])
    return torch.from_numpy(batch).to(device)


def _gain(x: torch.Tensor, rng: np.random.Generator, *, db: float) -> torch.Tensor:
    """Each clip times a random gain, uniform in +-db decibels."""
    gains = 10 ** (rng.uniform(-db, db, size=len(x)) / 20)
    return x * torch.as_tensor(gains, dtype=x.dtype, device=x.device)[:, None]


def _noise(x: torch.Tensor, rng: np.random.Generator, *, snr_db: tuple[float, float], p: float) -> torch.Tensor:
    """With probability p per clip, white noise at a random SNR in [snr_db] relative to the clip's power."""
    chosen = rng.random(len(x)) < p
    snr = rng.uniform(snr_db[0], snr_db[1], size=len(x))
    power = x.square().mean(dim=1).double().cpu().numpy()
    scale = np.where(chosen & (power > 0), np.sqrt(power / 10 ** (snr / 10)), 0.0).astype(np.float32)
    noise = torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32) * scale[:, None])
    return x + noise.to(x.device)


def _background(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, *, eventless: int,
                snr_db: tuple[float, float], p: float) -> torch.Tensor:
    """With probability p per clip, plus another clip of the batch whose row is (mostly) the
    `eventless` class, scaled to a random SNR in [snr_db] (clip power over added power)."""
    pool = np.flatnonzero(y[:, eventless].cpu().numpy() > 0.5)
    chosen = np.flatnonzero(rng.random(len(x)) < p)
    if len(pool) == 0 or len(chosen) == 0:
        return x
    other = rng.choice(pool, size=len(chosen))
    keep = other != chosen
    chosen, other = chosen[keep], other[keep]
    power = x.square().mean(dim=1).double().cpu().numpy()
    snr = rng.uniform(snr_db[0], snr_db[1], size=len(chosen))
    ratio = np.divide(power[chosen], power[other], out=np.zeros(len(chosen)), where=power[other] > 0)
    scale = np.sqrt(ratio / 10 ** (snr / 10))  # 0 for a silent clip or a silent background
    out = x.clone()
    idx = torch.as_tensor(chosen, device=x.device)
    out[idx] += x[torch.as_tensor(other, device=x.device)] * torch.as_tensor(scale, dtype=x.dtype, device=x.device)[:, None]
    return out


def _pitch_shift(x: torch.Tensor, rng: np.random.Generator, *, semitones: float) -> torch.Tensor:
    """Each clip resampled (linear interpolation) by 2 ** (s / 12), s uniform in +-semitones, then
    centre-cropped or padded back to its length: pitch and tempo change together."""
    n = x.shape[1]
    out = torch.empty_like(x)
    for i, s in enumerate(rng.uniform(-semitones, semitones, size=len(x))):
        m = max(2, int(round(n / 2 ** (s / 12))))
        out[i] = _center(F.interpolate(x[i][None, None], size=m, mode="linear", align_corners=True)[0, 0], n, 0.0)
    return out


def _mixup(x: Any, y: torch.Tensor, rng: np.random.Generator, *, alpha: float, p: float) -> tuple[Any, torch.Tensor]:
    """With probability p: x = lam x + (1 - lam) x[perm], same for y; lam ~ Beta(alpha, alpha)."""
    if rng.random() >= p or len(y) < 2:
        return x, y
    lam = float(rng.beta(alpha, alpha))
    perm = torch.as_tensor(rng.permutation(len(y)), device=y.device)

    def mix(t: torch.Tensor) -> torch.Tensor:
        return lam * t + (1 - lam) * t[perm]

    return (tuple(mix(t) for t in x) if isinstance(x, tuple) else mix(x)), mix(y)


# --- spectrogram steps: x [batch, channels, bins, frames] (or a tuple of them) -----------------


def _per_map(x: Any, fn: Callable[..., torch.Tensor], rng: np.random.Generator, **kw: Any) -> Any:
    """Apply `fn(map, rng, **kw)` to a feature map or to each map of a tuple."""
    return tuple(fn(m, rng, **kw) for m in x) if isinstance(x, tuple) else fn(x, rng, **kw)


def _time_masks(x: Any, rng: np.random.Generator, *, count: int, width: float) -> Any:
    """SpecAugment: `count` masks per clip of up to width x frames each; the same frames in every map."""
    maps = x if isinstance(x, tuple) else (x,)
    frames = maps[0].shape[-1]
    keep = torch.ones(len(maps[0]), frames, dtype=torch.bool)
    for i in range(len(keep)):
        for _ in range(count):
            w = int(rng.integers(0, int(width * frames) + 1))
            t0 = int(rng.integers(0, frames - w + 1))
            keep[i, t0 : t0 + w] = False
    out = tuple(_fill(m, keep.to(m.device)[:, None, None, :]) for m in maps)
    return out if isinstance(x, tuple) else out[0]


def _freq_masks(x: torch.Tensor, rng: np.random.Generator, *, count: int, width: int) -> torch.Tensor:
    """SpecAugment: `count` masks per clip of up to `width` bins each (at most half the bins)."""
    bins = x.shape[2]
    widest = min(width, bins // 2)
    keep = torch.ones(len(x), bins, dtype=torch.bool)
    for i in range(len(x)):
        for _ in range(count):
            w = int(rng.integers(0, widest + 1))
            f0 = int(rng.integers(0, bins - w + 1))
            keep[i, f0 : f0 + w] = False
    return _fill(x, keep.to(x.device)[:, None, :, None])


def _time_stretch(x: torch.Tensor, rng: np.random.Generator, *, amount: float) -> torch.Tensor:
    """Frames of each clip resampled (linear) by a rate in 1 +- amount, then centred back to the same
    frame count (padding with the clip's minimum, i.e. silence): tempo changes, pitch does not."""
    batch, channels, bins, frames = x.shape
    out = torch.empty_like(x)
    for i, rate in enumerate(rng.uniform(1 - amount, 1 + amount, size=batch)):
        m = max(2, int(round(frames * rate)))
        flat = x[i].reshape(1, channels * bins, frames)
        stretched = F.interpolate(flat, size=m, mode="linear", align_corners=True)[0]
        out[i] = _center(stretched, frames, float(x[i].min())).reshape(channels, bins, frames)
    return out


def _fill(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """x with the masked-out (keep False) cells set to each clip's mean."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(keep, x, mean)


def _center(t: torch.Tensor, n: int, value: float) -> torch.Tensor:
    """The last axis of t centre-cropped, or padded on both sides with `value`, to n."""
    m = t.shape[-1]
    if m >= n:
        start = (m - n) // 2
        return t[..., start : start + n]
    left = (n - m) // 2
    return F.pad(t, (left, n - m - left), value=value)


# --- class balance ---------------------------------------------------------------------------------


def sample_weights(targets: np.ndarray) -> np.ndarray:
    """[rows] sampling weights giving every distinct target row (class, or label set) equal total weight."""
    _, group, counts = np.unique(targets, axis=0, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[group.reshape(-1)]
    return weights / weights.sum()


def class_weights(targets: np.ndarray, *, task: str) -> np.ndarray:
    """Loss weights [outputs]: exclusive classes n / (classes x count) per class; independent ones
    (multilabel) negatives / positives per class (BCE pos_weight)."""
    positives = targets.sum(axis=0)
    if TASKS[task].independent:
        return (len(targets) - positives) / np.maximum(positives, 1.0)
    return len(targets) / (targets.shape[1] * np.maximum(positives, 1.0))
