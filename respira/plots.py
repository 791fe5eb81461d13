"""PNG figures of audio and features: waveform, spectrogram, class probabilities, events.

Each function draws on its own matplotlib ``Figure`` with the Agg canvas (no pyplot, so no
global figure state), returns the PNG bytes and, given ``path``, also writes them there.
Figures are 800 x 300 pixels (taller for many classes) with a tight layout.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from respira.errors import AudioError, ConfigError, DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from respira.features import FeatureConfig

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.0, 100
ENVELOPE_COLUMNS = 2000
"""Long waveforms are drawn as a min/max envelope over this many columns."""

BAR_COLOR = "#1f77b4"
_NICE_HZ = (50, 100, 200, 500, 1000, 2000, 4000, 8000, 16000, 24000, 48000)


def waveform_png(
    y: np.ndarray, *, sample_rate: int, path: str | Path | None = None, title: str | None = None
) -> bytes:
    """y [samples] at ``sample_rate`` Hz -> PNG of amplitude against time in seconds."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise AudioError(f"waveform_png: expected a non-empty 1-D signal, got shape {y.shape}")
    fig = _new_figure(HEIGHT_IN)
    ax = fig.add_subplot()
    if y.size > 2 * ENVELOPE_COLUMNS:
        starts = np.linspace(0, y.size, ENVELOPE_COLUMNS, endpoint=False).astype(np.int64)
        t = starts / sample_rate
        ax.fill_between(t, np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts),
                        color=BAR_COLOR, linewidth=0.5)
    else:
        ax.plot(np.arange(y.size) / sample_rate, y, color=BAR_COLOR, linewidth=0.8)
    ax.set_xlim(0, y.size / sample_rate)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    return _finish(fig, ax, path, title)


def spectrogram_png(
    S: np.ndarray,
    *,
    cfg: FeatureConfig,
    kind: str = "mel",
    path: str | Path | None = None,
    title: str | None = None,
) -> bytes:
    """S [bins, frames] (log-mel in dB, or MFCC) -> PNG with time in seconds and a colorbar.

    kind "mel": the frequency axis is labelled in Hz at the mel band centres of ``cfg``;
    kind "mfcc": the axis is the coefficient index, each coefficient drawn standardised over time
    (`standardised_mfcc`).
    """
    return _finish(*_spectrogram_figure(S, cfg=cfg, kind=kind), path, title)


def events_png(
    S: np.ndarray,
    *,
    cfg: FeatureConfig,
    start_s: float,
    annotated: list[tuple[float, float]],
    detections: list[tuple[float, float, float, str]],
    threshold: float,
    path: str | Path | None = None,
    title: str | None = None,
) -> bytes:
    """S [n_mels, frames] log-mel (dB) of audio that starts `start_s` seconds into its file ->
    PNG on the file's time axis: annotated events [(start, end)] boxed in white, detections
    [(start, end, score, colour)] as bars of that colour along the top, labelled with their
    score; those under `threshold` are faint."""
    fig, ax = _spectrogram_figure(S, cfg=cfg, kind="mel", t0=start_s)
    top = S.shape[0] - 0.5
    for a, b in annotated:
        ax.axvspan(a, b, facecolor="none", edgecolor="white", linewidth=1.5)
    for a, b, score, colour in detections:
        alpha = 0.35 if score < threshold else 1.0
        ax.hlines(top - 3, a, b, colors=colour, linewidth=5, alpha=alpha)
        ax.text(a, top - 8, f"{score:.2f}", color="white", fontsize=7, alpha=alpha)
    ax.set_xlim(start_s, start_s + S.shape[1] * cfg.hop_length / cfg.sample_rate)
    return _finish(fig, ax, path, title)


def probabilities_png(
    probs: dict[str, float], *, path: str | Path | None = None, title: str | None = None
) -> bytes:
    """{label: probability} -> PNG of horizontal bars, highest at the top, value at each bar."""
    if not probs:
        raise DataError("probabilities_png: no probabilities to plot")
    items = sorted(((str(k), float(v)) for k, v in probs.items()), key=lambda kv: -kv[1])
    values = np.array([v for _, v in items])
    if not np.all(np.isfinite(values)):
        raise DataError(f"probabilities_png: non-finite probability in {dict(items)}")
    fig = _new_figure(max(HEIGHT_IN, 0.3 * len(items) + 1.0))
    ax = fig.add_subplot()
    rows = np.arange(len(items))
    ax.barh(rows, values, color=BAR_COLOR, height=0.7)
    ax.set_yticks(rows, [k for k, _ in items])
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(values.max())) * 1.08)
    for row, value in zip(rows, values):
        ax.text(value, row, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel("probability")
    return _finish(fig, ax, path, title)


def _mel_axis(ax: Axes, bins: int, cfg: FeatureConfig) -> str:
    from respira.features import mel_frequencies

    if bins != cfg.n_mels:
        raise DataError(f"spectrogram_png: {bins} mel bins, but the config has n_mels={cfg.n_mels}")
    centers = mel_frequencies(bins + 2, fmin=cfg.fmin, fmax=cfg.mel_fmax)[1:-1]
    ticks: dict[float, str] = {}
    for hz in (f for f in _NICE_HZ if centers[0] <= f <= centers[-1]):
        position = float(np.interp(hz, centers, np.arange(bins)))
        if not ticks or position - max(ticks) >= bins / 12:  # keep labels apart
            ticks[position] = _hz_label(hz)
    ax.set_yticks(list(ticks), list(ticks.values()))
    ax.set_ylabel("frequency (Hz)")
    return "dB"


def _mfcc_axis(ax: Axes, bins: int, cfg: FeatureConfig) -> str:
    ax.set_ylabel("coefficient")
    return "SD, per coefficient over time"


def standardised_mfcc(S: np.ndarray) -> np.ndarray:
    """MFCC [coefficients, frames] -> each coefficient standardised over time (mean 0, SD 1; a
    constant one -> 0), float32.

    Drawn as they are, coefficient 0 (the log energy, far below the rest) stretches the colour
    scale so that every other coefficient is one colour. Leaving it out would not do:
    coefficient 1 (the spectral tilt) still spans several times the range of the higher ones, and
    the loudness envelope would be lost. Standardised, as speech front ends normalise cepstra,
    every coefficient, 0 included, shows how it moves over the clip; their absolute sizes, which
    one colour scale could not show anyway, are what is given up.
    """
    S = np.asarray(S, dtype=np.float64)
    centred = S - S.mean(axis=1, keepdims=True)
    sd = centred.std(axis=1, keepdims=True)
    return np.divide(centred, sd, out=np.zeros_like(centred), where=sd > 0).astype(np.float32)


MFCC_SD_RANGE = 3.0
"""The MFCC colour scale spans +-this many standard deviations of each coefficient."""


@dataclass(frozen=True)
class _Kind:
    """How a spectrogram kind is drawn. axis: labels the bins axis and returns the colorbar label;
    values: S -> the values drawn; limits: their colour scale (None: their range)."""

    axis: Callable[[Axes, int, FeatureConfig], str]
    cmap: str
    values: Callable[[np.ndarray], np.ndarray] = np.asarray
    limits: tuple[float, float] | None = None


_KINDS = {
    "mel": _Kind(_mel_axis, "magma"),
    "mfcc": _Kind(_mfcc_axis, "coolwarm", standardised_mfcc, (-MFCC_SD_RANGE, MFCC_SD_RANGE)),
}


def _spectrogram_figure(S: np.ndarray, *, cfg: FeatureConfig, kind: str, t0: float = 0.0) -> tuple[Figure, Axes]:
    if kind not in _KINDS:
        raise ConfigError(f"spectrogram_png: kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    S = np.asarray(S, dtype=np.float32)
    if S.ndim != 2 or 0 in S.shape:
        raise DataError(f"spectrogram_png: expected non-empty [bins, frames], got shape {S.shape}")
    bins, frames = S.shape
    drawn = _KINDS[kind]
    vmin, vmax = drawn.limits or (None, None)
    fig = _new_figure(HEIGHT_IN)
    ax = fig.add_subplot()
    image = ax.imshow(
        drawn.values(S), origin="lower", aspect="auto", interpolation="nearest", cmap=drawn.cmap,
        vmin=vmin, vmax=vmax, extent=(t0, t0 + frames * cfg.hop_length / cfg.sample_rate, -0.5, bins - 0.5),
    )
    fig.colorbar(image, ax=ax, label=drawn.axis(ax, bins, cfg), pad=0.01)
    ax.set_xlabel("time (s)")
    return fig, ax


def _hz_label(hz: float) -> str:
    return f"{hz / 1000:g}k" if hz >= 1000 else f"{hz:g}"


def _new_figure(height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, ax: Axes, path: str | Path | None, title: str | None) -> bytes:
    if title:
        ax.set_title(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
