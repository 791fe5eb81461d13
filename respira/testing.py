"""Synthetic audio with planted events at known times, for tests and benchmarks.

Every generator is pure numpy and driven by the `numpy.random.Generator` (or seed) it is given,
so the same seed gives the same samples. Single sounds come back with peak 1.0; `scene`,
`night` and `clip_dataset` scale them (event peak in dBFS over a noise bed with an RMS in dBFS);
`mix_night` does the same with sounds it is given (real clips, for benchmarks).
Shapes are 1-D mono arrays of samples.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_BED_CHUNK_S = 10.0  # night(): the noise bed is made in chunks of this length, whatever block_s is
_MANIFEST_COLUMNS = ["path", "label", "start", "end", "subject", "split", "source_label"]


@dataclass(frozen=True)
class Event:
    """A planted sound: its true extent in seconds from the start of the audio, and its label."""

    start: float
    end: float
    label: str


# --- single sounds (peak 1.0) -------------------------------------------------------------


def cough(*, sample_rate: int = 16000, rng: np.random.Generator) -> np.ndarray:
    """A cough, 0.25-0.6 s: explosive broadband burst (~5 ms attack, decay), then a voiced tail.

    Returns float32 [samples], peak 1.0.
    """
    n = int(round(rng.uniform(0.25, 0.6) * sample_rate))
    t = np.arange(n) / sample_rate
    burst_s = rng.uniform(0.3, 0.45) * n / sample_rate
    attack_s = rng.uniform(0.003, 0.008)
    burst_env = np.minimum(t / attack_s, 1.0) * np.exp(-np.maximum(t - attack_s, 0) / (burst_s / 3))
    lo, hi = rng.uniform(150, 400), rng.uniform(2500, 5000)
    burst = _shape_spectrum(rng.standard_normal(n), sample_rate, lambda f: _band(f, lo, hi))

    tail_start = int(0.6 * burst_s * sample_rate)
    tail_t = t[tail_start:] - t[tail_start]
    f0 = rng.uniform(150, 350) * (1 - 0.15 * tail_t / max(tail_t[-1], 1e-9))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 7)) + 0.5 * rng.standard_normal(len(tail_t))
    tail = np.zeros(n)
    tail[tail_start:] = voiced * np.hanning(len(tail_t)) * rng.uniform(0.15, 0.4)

    y = burst * burst_env / np.abs(burst).max() + tail / max(np.abs(voiced).max(), 1e-9)
    return _peak_normalize(y * _fade(n, sample_rate, fade_in_s=0.0, fade_out_s=0.01))


def crackle(*, sample_rate: int = 16000, rng: np.random.Generator) -> np.ndarray:
    """A lung crackle: a short broadband transient of 5-20 ms. Returns float32 [samples], peak 1.0."""
    n = int(round(rng.uniform(0.005, 0.020) * sample_rate))
    t = np.arange(n) / sample_rate
    env = np.minimum(t / 0.001, 1.0) * np.exp(-t / (n / sample_rate / 4))
    y = _shape_spectrum(rng.standard_normal(n), sample_rate, lambda f: _band(f, 100, 4000)) * env
    return _peak_normalize(y * _fade(n, sample_rate, fade_in_s=0.0, fade_out_s=0.002))


def wheeze(*, sample_rate: int = 16000, rng: np.random.Generator, duration_s: float = 0.4) -> np.ndarray:
    """A wheeze: a tone with f0 in 150-800 Hz, two weaker harmonics and slight vibrato.

    duration_s: seconds, > 0.1. Returns float32 [samples], peak 1.0.
    """
    if duration_s <= 0.1:
        raise ValueError(f"a wheeze lasts more than 0.1 s, got duration_s={duration_s}")
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(150, 800) * (1 + 0.015 * np.sin(2 * np.pi * rng.uniform(4, 8) * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    y = sum(a * np.sin(k * phase) for k, a in ((1, 1.0), (2, 0.35), (3, 0.15)) if k * f0.max() < sample_rate / 2)
    y = y + 0.01 * rng.standard_normal(n)
    return _peak_normalize(y * _fade(n, sample_rate, fade_in_s=0.03, fade_out_s=0.03))


def babble(*, sample_rate: int = 16000, rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """Speech-like sound: glottal pulses (f0 90-250 Hz) through random formants, 3-6 syllables/s.

    duration_s: seconds. Returns float32 [samples], peak 1.0.
    """
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 2 * np.pi)))
    f0 = np.clip(f0, 90, 250)
    cycles = np.floor(np.cumsum(f0) / sample_rate)
    pulses = np.diff(cycles, prepend=cycles[0]) + 0.02 * rng.standard_normal(n)  # + aspiration noise
    y = np.zeros(n)
    start = 0
    while start < n:
        length = min(int(sample_rate / rng.uniform(3, 6)), n - start)
        formants = ((rng.uniform(300, 800), 80), (rng.uniform(900, 2200), 120), (rng.uniform(2400, 3000), 180))
        segment = _shape_spectrum(pulses[start : start + length], sample_rate, lambda f: _formants(f, formants))
        y[start : start + length] = segment * np.hanning(length) * rng.uniform(0.5, 1.0)
        start += length
    return _peak_normalize(y)


def noise_bed(
    *, sample_rate: int = 16000, rng: np.random.Generator, duration_s: float, level_db: float = -50.0, color: str = "pink"
) -> np.ndarray:
    """Stationary background noise: `color` in white / pink / brown above 20 Hz, RMS `level_db` dBFS.

    Returns float32 [round(duration_s * sample_rate)].
    """
    exponents = {"white": 0.0, "pink": 1.0, "brown": 2.0}
    if color not in exponents:
        raise ValueError(f"unknown noise color {color!r}; known: {', '.join(exponents)}")
    n = int(round(duration_s * sample_rate))
    if n == 0:
        return np.zeros(0, np.float32)
    slope = -exponents[color] / 2
    y = _shape_spectrum(rng.standard_normal(n), sample_rate, lambda f: np.where(f >= 20.0, np.maximum(f, 20.0) ** slope, 0.0))
    rms = np.sqrt(np.mean(y**2))
    return (y * (10 ** (level_db / 20) / max(rms, 1e-12))).astype(np.float32)


# --- sounds by label, for scenes and clip data sets -----------------------------------------

SOUNDS: dict[str, Callable[[int, np.random.Generator, float], np.ndarray]] = {
    "cough": lambda sr, rng, max_s: cough(sample_rate=sr, rng=rng),
    "crackle": lambda sr, rng, max_s: crackle(sample_rate=sr, rng=rng),
    "wheeze": lambda sr, rng, max_s: wheeze(sample_rate=sr, rng=rng, duration_s=rng.uniform(0.25, max(0.25, min(0.8, max_s)))),
    "speech": lambda sr, rng, max_s: babble(sample_rate=sr, rng=rng, duration_s=rng.uniform(0.6, max(0.6, min(2.0, max_s)))),
}
"""label -> (sample rate, rng, longest seconds wanted) -> sound with peak 1.0 and a random length."""


def scene(
    *,
    duration_s: float,
    sample_rate: int = 16000,
    events: dict[str, int] | None = None,
    bed_db: float = -50.0,
    event_db: float = -12.0,
    seed: int = 0,
    min_gap_s: float = 1.0,
) -> tuple[np.ndarray, list[Event]]:
    """A noise bed with `events` ({label: count}, labels from SOUNDS; None: none) at random times.

    Sounds have peak `event_db` dBFS, the bed RMS `bed_db` dBFS; sounds are at least `min_gap_s` s
    apart and `min_gap_s / 2` s from either end. Returns (float32 [round(duration_s * sample_rate)] with
    peak < 1, the planted Events sorted by start).
    """
    rng = np.random.default_rng(seed)
    wanted = events or {}
    unknown = sorted(set(wanted) - set(SOUNDS))
    if unknown:
        raise ValueError(f"unknown event label(s) {unknown}; known: {', '.join(SOUNDS)}")
    labels = [label for label in sorted(wanted) for _ in range(wanted[label])]
    labels = [labels[i] for i in rng.permutation(len(labels))]
    sounds = [SOUNDS[label](sample_rate, rng, duration_s / 4) for label in labels]
    y = noise_bed(sample_rate=sample_rate, rng=rng, duration_s=duration_s, level_db=bed_db).astype(np.float64)
    starts = _place([len(s) for s in sounds], total=len(y), gap=int(round(min_gap_s * sample_rate)), rng=rng)
    for start, sound in zip(starts, sounds):
        y[start : start + len(sound)] += sound * 10 ** (event_db / 20)
    planted = [Event(s / sample_rate, (s + len(sound)) / sample_rate, label) for s, sound, label in zip(starts, sounds, labels)]
    peak = np.abs(y).max(initial=0.0)
    if peak >= 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32), sorted(planted, key=lambda e: e.start)


def night(
    *, hours: float, sample_rate: int = 16000, coughs_per_hour: float = 10, seed: int = 0, block_s: float = 60.0
) -> Iterator[tuple[np.ndarray, list[Event]]]:
    """A long, mostly quiet night (pink bed at -50 dBFS) with coughs at random times, in blocks.

    Yields (float32 [block samples], Events that start in this block, times from the start of
    the night). The night holds round(hours * coughs_per_hour) coughs with peaks of -18 to
    -8 dBFS, at least 2 s apart; a cough may run on into the next block. The audio does not
    depend on block_s, and memory does not grow with `hours`.
    """
    total = int(round(hours * 3600 * sample_rate))
    n_coughs = int(round(hours * coughs_per_hour))
    lengths = [len(cough(sample_rate=sample_rate, rng=_cough_rng(seed, i))) for i in range(n_coughs)]
    rng = np.random.default_rng([seed, 2])
    starts = _place(lengths, total=total, gap=2 * sample_rate, rng=rng)
    gains = 10 ** (rng.uniform(-18, -8, n_coughs) / 20)
    block = max(1, int(round(block_s * sample_rate)))
    bed = _ChunkedBed(sr=sample_rate, seed=seed)
    for b0 in range(0, total, block):
        b1 = min(b0 + block, total)
        y = bed.segment(b0, b1).astype(np.float64)
        planted = []
        for i, (start, length) in enumerate(zip(starts, lengths)):
            if start < b1 and start + length > b0:
                sound = cough(sample_rate=sample_rate, rng=_cough_rng(seed, i)) * gains[i]
                lo, hi = max(start, b0), min(start + length, b1)
                y[lo - b0 : hi - b0] += sound[lo - start : hi - start]
            if b0 <= start < b1:
                planted.append(Event(start / sample_rate, (start + length) / sample_rate, "cough"))
        yield y.astype(np.float32), planted


def write_night(
    path: str | Path, *, hours: float, sample_rate: int = 16000, coughs_per_hour: float = 10, seed: int = 0
) -> list[Event]:
    """Stream `night(...)` to a 16-bit mono WAV at `path`; returns the planted Events."""
    import soundfile as sf

    planted: list[Event] = []
    with sf.SoundFile(str(path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16") as f:
        for y, events in night(hours=hours, sample_rate=sample_rate, coughs_per_hour=coughs_per_hour, seed=seed):
            f.write(y)
            planted.extend(events)
    return planted


def clip_dataset(
    root: str | Path,
    *,
    classes: tuple[str, ...] = ("cough", "speech", "wheeze"),
    per_class: int = 20,
    duration_s: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    subjects: int = 10,
) -> Path:
    """Write a labelled clip data set: root/{class}/{subject}_{i}.wav + root/manifest.csv.

    Each clip is `duration_s` s of noise bed (-60..-45 dBFS) with one sound of its class (peak
    -20..-6 dBFS) at a random offset; clip i belongs to subject f"s{i % subjects:02d}". The
    manifest has columns path (relative to root), label, start, end, subject, split,
    source_label (start, end, split empty; source_label = label). Returns the manifest path.
    """
    import soundfile as sf

    unknown = sorted(set(classes) - set(SOUNDS))
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; known: {', '.join(SOUNDS)}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    rows = []
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            subject = f"s{i % subjects:02d}"
            y = noise_bed(sample_rate=sample_rate, rng=rng, duration_s=duration_s, level_db=rng.uniform(-60, -45)).astype(np.float64)
            sound = SOUNDS[label](sample_rate, rng, 0.8 * duration_s)[:n]
            offset = rng.integers(0, n - len(sound) + 1)
            y[offset : offset + len(sound)] += sound * 10 ** (rng.uniform(-20, -6) / 20)
            rel = f"{label}/{subject}_{i}.wav"
            sf.write(root / rel, y.astype(np.float32), sample_rate, subtype="PCM_16")
            rows.append(dict(zip(_MANIFEST_COLUMNS, (rel, label, "", "", subject, "", label))))
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


# --- nights of given sounds ------------------------------------------------------------------


@dataclass(frozen=True)
class NightMix:
    """How `mix_night` lays sounds over its bed; levels in dBFS, times in seconds.

    bed_db: the pink bed's RMS drifts linearly between levels drawn uniformly from this range,
    a new one every `drift_s`. level_db: each sound's peak, uniform in this range. gap_s: the
    bed between consecutive sounds (and before the first and after the last), uniform in this
    range. fade_s: raised-cosine ramps inside each sound's ends (real clips cut anywhere click).
    """

    bed_db: tuple[float, float] = (-60.0, -45.0)
    drift_s: float = 300.0
    level_db: tuple[float, float] = (-30.0, -6.0)
    gap_s: tuple[float, float] = (2.0, 8.0)
    fade_s: float = 0.01


@dataclass(frozen=True)
class Placed:
    """Sound number `index` of those given to `mix_night`: its extent in the night (s) and its peak (dBFS)."""

    index: int
    start: float
    end: float
    peak_db: float


def mix_night(
    sounds: Iterable[np.ndarray], *, duration_s: float, sample_rate: int = 16000, rng: np.random.Generator,
    mix: NightMix = NightMix(),
) -> tuple[np.ndarray, list[Placed]]:
    """`duration_s` s of drifting pink bed with `sounds` (float [samples] at `sample_rate`, not silent)
    laid one after another, each scaled to a random peak and preceded by a random gap (see NightMix).

    Sounds are taken in order (the iterable may be endless) until the next one would leave less
    than `mix.gap_s[0]` of bed at the end; it and the rest are not used. Returns (float32
    [round(duration_s * sample_rate)], one Placed per sound laid, in order).
    """
    total = int(round(duration_s * sample_rate))
    y = _drifting_bed(total=total, sr=sample_rate, rng=rng, mix=mix)
    placed: list[Placed] = []
    at = 0
    for i, sound in enumerate(sounds):
        at += int(round(rng.uniform(*mix.gap_s) * sample_rate))
        if at + len(sound) > total - int(round(mix.gap_s[0] * sample_rate)):
            break
        faded = sound * _fade(len(sound), sample_rate, fade_in_s=mix.fade_s, fade_out_s=mix.fade_s)
        peak = np.abs(faded).max(initial=0.0)
        if peak == 0:
            raise ValueError(f"sound {i} is silent")
        peak_db = float(rng.uniform(*mix.level_db))
        y[at : at + len(sound)] += (faded * (10 ** (peak_db / 20) / peak)).astype(np.float32)
        placed.append(Placed(i, at / sample_rate, (at + len(sound)) / sample_rate, peak_db))
        at += len(sound)
    return y, placed


def sound_extent(y: np.ndarray, *, sample_rate: int, top_db: float = 30.0, frame_s: float = 0.01) -> tuple[int, int]:
    """[start, end) samples of `y` [samples], from the first to the last `frame_s` frame whose
    energy is within `top_db` of the loudest frame's; (0, 0) when `y` is silent."""
    frame = max(1, int(round(frame_s * sample_rate)))
    n = -(-len(y) // frame)
    padded = np.zeros(n * frame)
    padded[: len(y)] = y
    energy = np.mean(padded.reshape(n, frame) ** 2, axis=1)
    if n == 0 or energy.max() == 0:
        return 0, 0
    loud = np.flatnonzero(energy >= energy.max() * 10 ** (-top_db / 10))
    return int(loud[0] * frame), int(min((loud[-1] + 1) * frame, len(y)))


# --- helpers ---------------------------------------------------------------------------------


class _ChunkedBed:
    """night()'s noise bed, made in fixed chunks seeded by their index, so any block is cheap."""

    def __init__(self, *, sr: int, seed: int) -> None:
        self.sr, self.seed = sr, seed
        self.chunk = int(round(_BED_CHUNK_S * sr))
        self._cached: tuple[int, np.ndarray] | None = None

    def _get(self, k: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != k:
            rng = np.random.default_rng([self.seed, 0, k])
            self._cached = (k, noise_bed(sample_rate=self.sr, rng=rng, duration_s=_BED_CHUNK_S, level_db=-50.0))
        return self._cached[1]

    def segment(self, b0: int, b1: int) -> np.ndarray:
        """Samples [b0, b1) of the bed."""
        parts = []
        for k in range(b0 // self.chunk, (b1 - 1) // self.chunk + 1):
            c0 = k * self.chunk
            parts.append(self._get(k)[max(b0, c0) - c0 : min(b1, c0 + self.chunk) - c0])
        return np.concatenate(parts)


def _drifting_bed(*, total: int, sr: int, rng: np.random.Generator, mix: NightMix) -> np.ndarray:
    """mix_night's bed: float32 [total] pink noise, made in chunks, its RMS level moving as NightMix says."""
    knots = np.arange(0, total / sr + mix.drift_s, mix.drift_s)
    levels = rng.uniform(*mix.bed_db, len(knots))
    y = np.empty(total, np.float32)
    chunk = int(round(_BED_CHUNK_S * sr))
    for c0 in range(0, total, chunk):
        c1 = min(c0 + chunk, total)
        gain = 10 ** (np.interp(np.arange(c0, c1) / sr, knots, levels) / 20)
        y[c0:c1] = noise_bed(sample_rate=sr, rng=rng, duration_s=(c1 - c0) / sr, level_db=0.0) * gain
    return y


def _cough_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1, i])


def _place(lengths: list[int], *, total: int, gap: int, rng: np.random.Generator) -> list[int]:
    """Random start samples for sounds in the given order: non-overlapping, >= gap apart, gap/2 from the ends."""
    slack = total - sum(lengths) - gap * len(lengths)
    if slack < 0:
        raise ValueError(
            f"{len(lengths)} sounds ({sum(lengths)} samples) with gaps of {gap} samples do not fit in {total} samples"
        )
    cuts = np.sort(rng.integers(0, slack + 1, len(lengths)))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths else np.zeros(0, int)
    return [int(gap // 2 + c + o + i * gap) for i, (c, o) in enumerate(zip(cuts, offsets))]


def _shape_spectrum(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Filter x by a zero-phase magnitude response gain(frequency in Hz), via the FFT."""
    spectrum = np.fft.rfft(x)
    return np.fft.irfft(spectrum * gain(np.fft.rfftfreq(len(x), 1 / sr)), n=len(x))


def _band(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A gentle band-pass: first-order roll-off below `lo` and above `hi` Hz."""
    return (f / np.sqrt(f**2 + lo**2)) / np.sqrt(1 + (f / hi) ** 2)


def _formants(f: np.ndarray, formants: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Gaussian resonances at (centre Hz, bandwidth Hz), -6 dB/octave above 100 Hz, nothing below 60 Hz."""
    peaks = sum(np.exp(-0.5 * ((f - fc) / bw) ** 2) for fc, bw in formants)
    return np.where(f < 60, 0.0, (0.05 + peaks) * 100 / np.maximum(f, 100))


def _fade(n: int, sr: int, *, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """A gain of 1 with raised-cosine ramps at the ends, [n]."""
    g = np.ones(n)
    a, b = min(int(fade_in_s * sr), n), min(int(fade_out_s * sr), n)
    g[:a] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / max(a, 1))
    g[n - b :] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(b) + 1) / max(b, 1))
    return g


def _peak_normalize(y: np.ndarray) -> np.ndarray:
    return (y / max(np.abs(y).max(initial=0.0), 1e-12)).astype(np.float32)


def encode(y: np.ndarray, *, sample_rate: int, fmt: str, codec: str, path=None, bit_rate: int = 128_000) -> bytes | None:
    """Encode mono float32 `y` [samples] at `sample_rate` with PyAV (e.g. fmt "webm", codec "libopus").

    With `path`, writes an ordinary file and returns None. Without, writes to a non-seekable
    sink and returns the bytes: a stream with no duration in its header, as a browser's
    MediaRecorder makes it.
    """
    from fractions import Fraction

    import av

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, b: bytes) -> int:
            self.data += b
            return len(b)

    sink = Sink()
    with av.open(str(path) if path is not None else sink, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout="mono")
        stream.codec_context.bit_rate = bit_rate
        for i in range(0, len(y), 960):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i : i + 960], dtype=np.float32),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, i, Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return None if path is not None else bytes(sink.data)
