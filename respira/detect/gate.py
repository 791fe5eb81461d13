"""The energy gate: frame levels against an adaptive noise floor, streamed block by block.

Levels are measured after a high-pass filter at `gate_highpass_hz` (2nd-order Butterworth,
its state carried across blocks), so rumble (traffic, ventilation, brown noise) that
wanders by 10 dB between 20-ms frames does not open the gate. Frames are `gate_frame_s`
long; frame i covers samples [i * frame, (i + 1) * frame). The floor for the frames of floor step j (`gate_floor_step_s` long) is the `gate_percentile`-th
percentile of the levels of the last `gate_floor_s` seconds of frames up to the end of step
j, so a frame's floor is known once its step is complete (at most one step of latency).
Every result depends only on the samples, never on how they were cut into blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from respira.detect.config import DetectConfig

_POWER_FLOOR = 1e-10  # -100 dBFS for digital silence


@dataclass
class GateState:
    """What the gate carries from one block to the next (small: about gate_floor_s of frame levels)."""

    frames: int = 0  # frames emitted so far (the index of the next one)
    filter_state: np.ndarray = field(default_factory=lambda: np.zeros(0))  # high-pass filter state, [sections, 2]
    leftover: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # samples short of a frame
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0))  # levels of the current, incomplete step
    history: np.ndarray = field(default_factory=lambda: np.zeros(0))  # levels of the last gate_floor_s emitted

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"frames": np.array(self.frames), "filter_state": self.filter_state, "leftover": self.leftover,
                "pending": self.pending, "history": self.history}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> GateState:
        return cls(int(a["frames"]), a["filter_state"].astype(float), a["leftover"].astype(np.float32),
                   a["pending"].astype(float), a["history"].astype(float))


@dataclass(frozen=True)
class Levels:
    """Frame levels and their noise floors, dBFS, for frames first .. first + len(db) - 1."""

    first: int
    db: np.ndarray  # [frames] float32
    floor: np.ndarray  # [frames] float32


def frame_samples(*, sample_rate: int, cfg: DetectConfig) -> int:
    """Samples per gate frame."""
    return max(1, round(cfg.gate_frame_s * sample_rate))


def frame_levels(block: np.ndarray, *, sample_rate: int, state: GateState, cfg: DetectConfig, final: bool = False) -> Levels:
    """Levels of the frames whose floor is now known: block [samples] float32 at `sample_rate` -> Levels.

    `final`: the stream has ended; the incomplete last step is emitted too (a trailing part
    shorter than a frame is dropped). `state` is updated in place.
    """
    frame = frame_samples(sample_rate=sample_rate, cfg=cfg)
    step = max(1, round(cfg.gate_floor_step_s / cfg.gate_frame_s))
    span = max(step, round(cfg.gate_floor_s / cfg.gate_frame_s))
    x = np.concatenate([state.leftover, _highpass(np.asarray(block, dtype=np.float32), sr=sample_rate, state=state, cfg=cfg)])
    n = len(x) // frame
    state.leftover = x[n * frame:].copy()
    power = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    pending = np.concatenate([state.pending, 10 * np.log10(power + _POWER_FLOOR)])

    first = state.frames
    done = len(pending) if final else (first + len(pending)) // step * step - first
    done = max(done, 0)
    db, state.pending = pending[:done], pending[done:]
    recent = np.concatenate([state.history, db])
    # the floor of each (part of a) floor step: the percentile of the span of levels up to its end
    ends = np.append(np.arange((first // step + 1) * step - first, done, step), done) if done else np.zeros(0, int)
    floor = np.repeat(_floors(recent, len(state.history) + ends, span=span, q=cfg.gate_percentile),
                      np.diff(ends, prepend=0))
    state.history = recent[-span:]
    state.frames += done
    return Levels(first, db.astype(np.float32), floor.astype(np.float32))


def _floors(levels: np.ndarray, uppers: np.ndarray, *, span: int, q: float) -> np.ndarray:
    """[len(uppers)]: the q-th percentile of levels[max(0, u - span): u] for each u in uppers
    (increasing); the full-span ones in one vectorised call."""
    out = np.empty(len(uppers))
    short = int(np.searchsorted(uppers, span))  # those with fewer than span levels before them
    for i in range(short):
        out[i] = np.percentile(levels[: uppers[i]], q)
    if short < len(uppers):
        windows = np.lib.stride_tricks.sliding_window_view(levels, span)[uppers[short:] - span]
        out[short:] = np.percentile(windows, q, axis=1)
    return out


def _highpass(block: np.ndarray, *, sr: int, state: GateState, cfg: DetectConfig) -> np.ndarray:
    """block high-passed at cfg.gate_highpass_hz (0: unchanged), continuing from state.filter_state."""
    if cfg.gate_highpass_hz <= 0 or len(block) == 0:
        return block
    from scipy import signal

    sos = signal.butter(2, min(cfg.gate_highpass_hz, 0.45 * sr), "highpass", fs=sr, output="sos")
    if state.filter_state.size == 0:
        state.filter_state = np.zeros((sos.shape[0], 2))
    y, state.filter_state = signal.sosfilt(sos, block.astype(np.float64), zi=state.filter_state)
    return y.astype(np.float32)


def loud(levels: Levels, *, cfg: DetectConfig, over_floor_db: float | None = None) -> np.ndarray:
    """Bool [frames]: the level exceeds max(floor + over_floor_db, gate_min_dbfs); over_floor_db
    None: cfg.gate_db (the frames that open the gate)."""
    margin = cfg.gate_db if over_floor_db is None else over_floor_db
    return levels.db > np.maximum(levels.floor + np.float32(margin), np.float32(cfg.gate_min_dbfs))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)) index ranges of the True runs of a bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


class ActiveTime:
    """Where the gate is open, counted as the loud flags of consecutive frames arrive (`add`):
    each run of loud frames widened by `pad_s` seconds on both sides (never before 0),
    overlapping ones merged. Results do not depend on how the flags were cut into pieces."""

    def __init__(self, *, frame_s: float, pad_s: float) -> None:
        self.frame_s, self.pad_s = frame_s, pad_s
        self.frames = 0  # flags seen
        self._run: int | None = None  # the first frame of a loud run still open at the last flag
        self._closed: list[tuple[float, float]] = []  # regions no later run can widen
        self._closed_s = 0.0  # their seconds (all before the last frame), so `seconds` does not re-add them
        self._open: tuple[float, float] | None = None  # the last region

    def add(self, flags: np.ndarray) -> None:
        """The loud flags [frames] bool of the next frames."""
        first = self.frames
        self.frames += len(flags)
        if self._run is not None and len(flags) and not flags[0]:
            self._add_run(self._run, first)
            self._run = None
        for a, b in runs(flags):
            start = self._run if a == 0 and self._run is not None else first + a
            self._run = start if b == len(flags) else None
            if self._run is None:
                self._add_run(start, first + b)

    def regions(self) -> list[tuple[float, float]]:
        """[(start_s, end_s)] so far, a loud run still open counted up to the last frame seen."""
        closed, last = self._merged()
        return self._closed + closed + ([last] if last else [])

    def seconds(self, duration_s: float) -> float:
        """Seconds of `regions()` within the first `duration_s` seconds (at least the frames seen)."""
        closed, last = self._merged()
        return sum((max(0.0, min(b, duration_s) - a) for a, b in closed + ([last] if last else [])), self._closed_s)

    def _merged(self) -> tuple[list[tuple[float, float]], tuple[float, float] | None]:
        """(the regions the open run closes, the last region) with the open run ended at the last frame."""
        if self._run is None:
            return [], self._open
        closed, last = self._merge(self._open, self._run, self.frames)
        return ([closed] if closed else []), last

    def _add_run(self, a: int, b: int) -> None:
        closed, self._open = self._merge(self._open, a, b)
        if closed:
            self._closed.append(closed)
            self._closed_s += closed[1] - closed[0]

    def _merge(self, last: tuple[float, float] | None, a: int, b: int):
        """Frames [a, b) after region `last` -> (the region this closes or None, the last region)."""
        start, end = max(0.0, a * self.frame_s - self.pad_s), b * self.frame_s + self.pad_s
        if last is not None and start <= last[1]:
            return None, (last[0], max(last[1], end))
        return last, (start, end)
