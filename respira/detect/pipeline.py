"""A long recording -> candidate events, a score track and the active time, streamed block by block.

Blocks go through the gate (frame levels, noise floor); windows of the model's clip length,
every hop_s, are scored once the gate has seen gate_pad_s past their end (only windows near
loud frames when the gate is on); the audio kept between blocks is one window plus the pad.
At the end, energy bursts (`segment.find_bursts`) become events scored from the windows
containing their loudest frame. Results do not depend on the block size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Protocol

import numpy as np

from respira.detect import checkpoint as ckpt
from respira.detect.config import DetectConfig
from respira.detect.events import Event
from respira.detect.gate import Levels, frame_levels, frame_samples, loud, padded_regions
from respira.detect.segment import find_bursts
from respira.detect.state import Chunk, FileResult, StreamState
from respira.errors import ModelError

Progress = Callable[[float], None]
"""Called with the seconds of audio just processed."""


class Scorer(Protocol):
    """What the detector needs from a model (respira.inference.Model is one)."""

    sample_rate: int
    clip_seconds: float
    classes: tuple[str, ...]
    positive: str | None

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """[n, clip samples] float32 -> [n, n_classes] probabilities."""
        ...


class StreamDetector:
    """Feed the blocks of one recording in order with `feed`, then `finish()` -> FileResult."""

    def __init__(self, scorer: Scorer, cfg: DetectConfig, *, file: str = "", state: StreamState | None = None) -> None:
        if getattr(scorer, "task", "classification") != "classification" or scorer.positive is None:
            raise ModelError(f"detect needs a binary classification model with a positive class (such as 'cough'); "
                             f"this one has classes {list(scorer.classes)} and no positive class")
        self.scorer, self.cfg, self.file = scorer, cfg, file
        self.sr = int(scorer.sample_rate)
        self.window_s = float(cfg.window_s or scorer.clip_seconds)
        self.win = max(1, round(self.window_s * self.sr))
        self.hop = max(1, round(cfg.hop_s * self.sr))
        self.frame = frame_samples(sr=self.sr, cfg=cfg)
        self.pad = round(cfg.gate_pad_s * self.sr)
        self.positive_index = list(scorer.classes).index(scorer.positive)
        self.state = state or StreamState()

    def feed(self, block: np.ndarray) -> None:
        """Process the next block [samples] float32 at the scorer's sample rate."""
        block = np.asarray(block, dtype=np.float32)
        levels = frame_levels(block, sr=self.sr, state=self.state.gate, cfg=self.cfg)
        self._advance(block, levels, final=False)
        self.state.blocks += 1

    def finish(self) -> FileResult:
        """Flush the last frames and windows; the events of the whole recording."""
        levels = frame_levels(np.zeros(0, np.float32), sr=self.sr, state=self.state.gate, cfg=self.cfg, final=True)
        self._advance(np.zeros(0, np.float32), levels, final=True)
        s, cfg = self.state, self.cfg
        db = np.concatenate([c.db for c in s.chunks])
        all_levels = Levels(0, db, np.concatenate([c.floor for c in s.chunks]))
        mask = loud(all_levels, cfg=cfg)
        scores = np.concatenate([c.scores for c in s.chunks])
        frame_s = self.frame / self.sr
        duration = s.samples / self.sr
        regions = padded_regions(mask, first=0, frame_s=frame_s, pad_s=cfg.gate_pad_s)
        active = sum(max(0.0, min(b, duration) - a) for a, b in regions)
        keep = min(cfg.candidate_floor, cfg.threshold)
        candidates = []
        for start, stop, peak in find_bursts(all_levels, frame_s=frame_s, cfg=cfg):
            score = self._burst_score(scores, peak)
            if score >= keep:
                candidates.append(Event(self.file, start * frame_s, min(stop * frame_s, duration), self.scorer.positive, score))
        return FileResult(self.file, tuple(candidates), scores.astype(np.float16), self.hop / self.sr, self.window_s,
                          duration, active, cfg.threshold)

    # internals

    def _n_windows(self) -> int:
        """Windows in the whole recording (known once it has ended): the last one is zero-padded."""
        n = self.state.samples
        return 0 if n == 0 else 1 if n <= self.win else math.ceil((n - self.win) / self.hop) + 1

    def _advance(self, block: np.ndarray, levels: Levels, *, final: bool) -> None:
        s = self.state
        s.samples += len(block)
        s.buffer = np.concatenate([s.buffer, block])
        s.loud_tail = np.concatenate([s.loud_tail, loud(levels, cfg=self.cfg)])
        frames = s.gate.frames
        if final:
            last = self._n_windows()
        else:  # window k is decided once the frames up to its end + pad are known
            last = max(s.next_window, (frames * self.frame - self.pad - self.win) // self.hop + 1)
        ks = np.arange(s.next_window, last)
        s.chunks.append(Chunk(levels.db, levels.floor, self._score(ks, frames)))
        s.next_window = last
        keep_from = last * self.hop
        s.buffer = s.buffer[max(0, keep_from - s.buffer_start):]
        s.buffer_start = max(s.buffer_start, keep_from)
        first_frame = max(s.loud_start, (keep_from - self.pad) // self.frame)
        s.loud_tail = s.loud_tail[first_frame - s.loud_start:]
        s.loud_start = first_frame

    def _score(self, ks: np.ndarray, frames: int) -> np.ndarray:
        """Positive-class probabilities [len(ks)] float32 of windows ks (0 for gated-out ones)."""
        s = self.state
        out = np.zeros(len(ks), np.float32)
        if len(ks) == 0:
            return out
        starts = ks * self.hop
        if self.cfg.gate:
            lo = np.clip((starts - self.pad) // self.frame, s.loud_start, frames) - s.loud_start
            hi = np.minimum(-(-(starts + self.win + self.pad) // self.frame), frames) - s.loud_start
            cum = np.concatenate([[0], np.cumsum(s.loud_tail)])
            active = np.flatnonzero(cum[np.maximum(hi, lo)] - cum[lo] > 0)
        else:
            active = np.arange(len(ks))
        for i in range(0, len(active), self.cfg.batch_size):
            chosen = active[i: i + self.cfg.batch_size]
            windows = np.zeros((len(chosen), self.win), np.float32)
            for row, j in enumerate(chosen):
                piece = s.buffer[starts[j] - s.buffer_start: starts[j] - s.buffer_start + self.win]
                windows[row, : len(piece)] = piece
            out[chosen] = np.asarray(self.scorer.score_windows(windows))[:, self.positive_index]
        return out

    def _burst_score(self, scores: np.ndarray, peak_frame: int) -> float:
        """The highest score of the windows that contain the centre of frame `peak_frame`."""
        centre = peak_frame * self.frame + self.frame // 2
        lo = max(0, -(-(centre - self.win + 1) // self.hop))
        hi = min(len(scores), centre // self.hop + 1)
        return float(scores[lo:hi].max()) if hi > lo else 0.0


def detect_array(y: np.ndarray, scorer: Scorer, cfg: DetectConfig = DetectConfig(), *, file: str = "") -> FileResult:
    """Detect in a waveform y [samples] float32 at scorer.sample_rate, fed in blocks of cfg.block_s."""
    detector = StreamDetector(scorer, cfg, file=file)
    size = max(1, round(cfg.block_s * detector.sr))
    for i in range(0, len(y), size):
        detector.feed(y[i: i + size])
    return detector.finish()


def detect_file(
    path: str | os.PathLike,
    scorer: Scorer,
    cfg: DetectConfig = DetectConfig(),
    *,
    progress: Progress | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> FileResult:
    """Detect in the audio file `path`, streamed in blocks of cfg.block_s at scorer.sample_rate.

    checkpoint: a folder where the detector's state is saved after every block; a run that
    finds a state there (from a killed run with the same file and settings) resumes after the
    last saved block. The folder is removed when the file is done. Events name the file as `path`
    is given. Raises AudioError when the file cannot be read.
    """
    from respira import audio

    file = os.fspath(path)
    state = ckpt.load_state(checkpoint) if checkpoint is not None else None
    detector = StreamDetector(scorer, cfg, file=file, state=state)
    skip = detector.state.blocks
    for i, block in enumerate(audio.stream(path, sr=detector.sr, block_s=cfg.block_s)):
        if i >= skip:
            detector.feed(block)
            if checkpoint is not None:
                ckpt.save_state(checkpoint, detector.state)
        if progress is not None:
            progress(len(block) / detector.sr)
    result = detector.finish()
    if checkpoint is not None:
        ckpt.clear_state(checkpoint)
    return result

