"""A long recording -> candidate events, a score track and the active time, streamed block by block.

Blocks go through the gate (frame levels, noise floor); windows of the model's clip length,
every hop_s, are scored once the gate has seen gate_pad_s past their end (only windows near
loud frames when the gate is on); the audio kept between blocks is one window plus the pad.
At the end, energy bursts (`segment.find_bursts`) become events scored from the windows
centred on their loudest frame. Results do not depend on the block size. Events are also
released while streaming, as soon as later audio can no longer change them (`feed`'s return).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from respira.detect import checkpoint as ckpt
from respira.detect.config import DetectConfig
from respira.detect.events import Event
from respira.detect.gate import ActiveTime, Levels, frame_levels, frame_samples, loud, runs
from respira.detect.segment import find_bursts, merged, sounding_frames
from respira.detect.state import Chunk, FileResult, StreamState
from respira.errors import ModelError
from respira.windowing import WindowGrid

Progress = Callable[[float], None]
"""Called with the seconds of audio just processed."""


class Scorer(Protocol):
    """What the detector needs from a model (respira.inference.Model is one). A scorer may also
    have `score_strip(y, *, hop, n, length, batch_size)`, used for runs of consecutive windows
    (see `score_strip` below), and a `screener`: a cheaper scorer (an ensemble's first member)
    that scores every window, leaving the scorer itself only the windows where the screener's
    positive-class probability reaches cfg.screen."""

    sample_rate: int
    clip_s: float
    classes: tuple[str, ...]
    positive: str | None

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """[n, clip samples] float32 -> [n, n_classes] probabilities."""
        ...


def score_strip(scorer: Scorer, y: np.ndarray, *, hop: int, n: int, length: int, batch_size: int) -> np.ndarray:
    """[n, n_classes] probabilities of the windows y[k * hop : k * hop + length], k < n, zero-padded
    past the end of y: the scorer's own `score_strip` when it has one (Model: features computed
    once for overlapping windows), else `score_windows` in batches."""
    own = getattr(scorer, "score_strip", None)
    if own is not None:
        return np.asarray(own(y, hop=hop, n=n, length=length, batch_size=batch_size))
    return score_picked(scorer, y, np.arange(n), hop=hop, length=length, batch_size=batch_size)


def score_picked(scorer: Scorer, y: np.ndarray, picked: np.ndarray, *, hop: int, length: int, batch_size: int) -> np.ndarray:
    """[len(picked), n_classes] probabilities of the windows y[k * hop : k * hop + length], k in
    `picked` (ascending, not empty), zero-padded past the end of y, by `score_windows` in batches."""
    windows = WindowGrid(hop=hop, length=length).windows(y, picked)
    return np.concatenate([np.asarray(scorer.score_windows(np.ascontiguousarray(windows[i: i + batch_size])))
                           for i in range(0, len(windows), batch_size)])


def check_scorer(scorer: Scorer) -> None:
    """ModelError unless `scorer` is a classification model with a positive class (such as 'cough')."""
    if getattr(scorer, "task", "classification") != "classification" or scorer.positive is None:
        raise ModelError(f"detect needs a binary classification model with a positive class (such as 'cough'); "
                         f"this one has classes {list(scorer.classes)} and no positive class")


class StreamDetector:
    """Feed the blocks of one recording in order with `feed`, then `finish()` -> FileResult.

    `feed` returns the events that became final with its block; they are the first `released`
    of finish().events (counted from the start of the recording, also after resuming a state).
    `active_s`: the seconds within gate_pad_s of a loud frame so far (finish().active_s at the end).
    """

    def __init__(self, scorer: Scorer, cfg: DetectConfig, *, file: str = "", state: StreamState | None = None) -> None:
        check_scorer(scorer)
        self.scorer, self.cfg, self.file = scorer, cfg, file
        self.sample_rate = int(scorer.sample_rate)
        self.window_s = float(cfg.window_s or scorer.clip_s)
        self.win = max(1, round(self.window_s * self.sample_rate))
        self.hop = max(1, round(cfg.hop_s * self.sample_rate))
        self.grid = WindowGrid(hop=self.hop, length=self.win)
        self.frame = frame_samples(sample_rate=self.sample_rate, cfg=cfg)
        self.pad = round(cfg.gate_pad_s * self.sample_rate)
        self.positive_index = list(scorer.classes).index(scorer.positive)
        self.screener: Scorer | None = getattr(scorer, "screener", None)
        self.state = state or StreamState()
        self.released = 0  # events returned by feed so far
        self._settled = 0  # the frames before this one hold only released bursts
        self._active = ActiveTime(frame_s=self.frame / self.sample_rate, pad_s=cfg.gate_pad_s)
        for c in self.state.chunks:  # a resumed state: the frames seen so far
            self._active.add(loud(Levels(self._active.frames, c.db, c.floor), cfg=cfg))

    @property
    def active_s(self) -> float:
        return self._active.seconds(self.state.samples / self.sample_rate)

    def feed(self, block: np.ndarray) -> list[Event]:
        """Process the next block [samples] float32 at the scorer's sample rate; returns the events
        (score >= threshold) that later audio can no longer change, in time order: exactly the
        next ones of finish().events."""
        block = np.asarray(block, dtype=np.float32)
        levels = frame_levels(block, sample_rate=self.sample_rate, state=self.state.gate, cfg=self.cfg)
        self._advance(block, levels, final=False)
        self.state.blocks += 1
        events = [e for e in self._release() if e.score >= self.cfg.threshold]
        self.released += len(events)
        return events

    def finish(self) -> FileResult:
        """Flush the last frames and windows; the events of the whole recording."""
        levels = frame_levels(np.zeros(0, np.float32), sample_rate=self.sample_rate, state=self.state.gate, cfg=self.cfg,
                              final=True)
        self._advance(np.zeros(0, np.float32), levels, final=True)
        all_levels, scores = self._recent(0, 0)
        duration = self.state.samples / self.sample_rate
        candidates = self._candidates(all_levels, scores, first_window=0, duration=duration)
        return FileResult(self.file, tuple(candidates), scores.astype(np.float16), self.hop / self.sample_rate, self.window_s,
                          duration, self.active_s, self.cfg.threshold)

    # internals

    def _advance(self, block: np.ndarray, levels: Levels, *, final: bool) -> None:
        s = self.state
        s.samples += len(block)
        s.buffer = np.concatenate([s.buffer, block])
        flags = loud(levels, cfg=self.cfg)
        self._active.add(flags)
        s.loud_tail = np.concatenate([s.loud_tail, flags])
        frames = s.gate.frames
        if final:  # the windows of the whole recording, the last one zero-padded
            last = self.grid.count(s.samples)
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
            active = cum[np.maximum(hi, lo)] - cum[lo] > 0
        else:
            active = np.ones(len(ks), bool)
        for a, b in runs(active):  # consecutive windows share their features
            first = starts[a] - s.buffer_start
            y = s.buffer[first: first + self.grid.reach(b - a)]
            p = score_strip(self.screener or self.scorer, y, hop=self.hop, n=b - a, length=self.win,
                            batch_size=self.cfg.batch_size)[:, self.positive_index]
            if self.screener is not None:
                p = self._rescore(y, p)
            out[a:b] = p
        return out

    def _rescore(self, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Screener scores p [n] of the windows y[k * hop : k * hop + win] -> the scorer's own where
        p >= cfg.screen (zero-padded past the end of y, as score_strip)."""
        picked = np.flatnonzero(p >= self.cfg.screen)
        if len(picked) == 0:
            return p
        full = score_picked(self.scorer, y, picked, hop=self.hop, length=self.win, batch_size=self.cfg.batch_size)
        out = p.copy()
        out[picked] = full[:, self.positive_index]
        return out

    def _recent(self, first_frame: int, first_window: int) -> tuple[Levels, np.ndarray]:
        """Frame levels from frame first_frame on, and window scores [windows] from window first_window on."""
        s = self.state
        frames, windows, picked = s.gate.frames, s.next_window, []
        for c in reversed(s.chunks):
            if frames <= first_frame and windows <= first_window:
                break
            picked.append(c)
            frames, windows = frames - len(c.db), windows - len(c.scores)

        def joined(parts: list[np.ndarray], skip: int) -> np.ndarray:
            return np.concatenate([np.zeros(0, np.float32), *parts[::-1]])[skip:]

        levels = Levels(first_frame, joined([c.db for c in picked], first_frame - frames),
                        joined([c.floor for c in picked], first_frame - frames))
        return levels, joined([c.scores for c in picked], first_window - windows)

    def _release(self) -> list[Event]:
        """The candidates of the bursts from frame self._settled on that later frames cannot change."""
        first_window = max(0, (self._settled * self.frame - self.win) // self.hop)
        levels, scores = self._recent(self._settled, first_window)
        n = self._final_frames(levels)
        if n == 0:
            return []
        self._settled += n
        final = Levels(levels.first, levels.db[:n], levels.floor[:n])
        return self._candidates(final, scores, first_window=first_window, duration=self.state.samples / self.sample_rate)

    def _final_frames(self, levels: Levels) -> int:
        """How many of `levels`' frames, from the first, hold only final bursts.

        `find_bursts` works on groups of runs with a loud frame, joined when less than merge_gap_s
        apart; a group is final once merge_gap_s of quiet frames follow it and the windows over its
        last frame are scored. A run still open at the last frame may yet become loud, so it counts
        as a group member. The count stops where the first group that is not final begins.
        """
        n, cfg = len(levels.db), self.cfg
        gap = max(1, round(cfg.merge_gap_s / (self.frame / self.sample_rate)))  # as find_bursts merges (0 and 1 alike)
        seed = loud(levels, cfg=cfg)
        spans = [(a, b) for a, b in runs(sounding_frames(levels, cfg=cfg)) if b == n or seed[a:b].any()]
        for a, b in merged(spans, gap=gap):
            centre = (levels.first + b - 1) * self.frame + self.frame // 2
            if b + gap > n or self.state.next_window <= centre // self.hop:
                return a
        return n

    def _candidates(self, levels: Levels, scores: np.ndarray, *, first_window: int, duration: float) -> list[Event]:
        """The bursts in `levels` scored from `scores` (windows first_window on), kept when
        score >= min(candidate_floor, threshold)."""
        frame_s, keep = self.frame / self.sample_rate, min(self.cfg.candidate_floor, self.cfg.threshold)
        out = []
        for start, stop, peak in find_bursts(levels, frame_s=frame_s, cfg=self.cfg):
            score = self._burst_score(scores, levels.first + peak, first_window=first_window)
            if score >= keep:
                out.append(Event(self.file, (levels.first + start) * frame_s, min((levels.first + stop) * frame_s, duration),
                                 self.scorer.positive, score))
        return out

    def _burst_score(self, scores: np.ndarray, peak_frame: int, *, first_window: int) -> float:
        """The highest score of the windows centred within one hop of the centre of frame
        `peak_frame` (at the ends of a recording, where none is, the containing window centred
        nearest it); scores[i] is window first_window + i. Windows that merely contain the frame
        would lend a cough's score to the breaths and words up to a window away."""
        centre = peak_frame * self.frame + self.frame // 2
        lo = max(first_window, -(-(centre - self.win + 1) // self.hop))
        hi = min(first_window + len(scores), centre // self.hop + 1)
        if hi <= lo:
            return 0.0
        k = np.arange(lo, hi)
        offset = np.abs(k * self.hop + self.win / 2 - centre)
        return float(scores[k[offset <= max(self.hop, offset.min())] - first_window].max())


def detect_array(y: np.ndarray, scorer: Scorer, cfg: DetectConfig = DetectConfig(), *, file: str = "") -> FileResult:
    """Detect in a waveform y [samples] float32 at scorer.sample_rate, fed in blocks of cfg.block_s."""
    detector = StreamDetector(scorer, cfg, file=file)
    size = max(1, round(cfg.block_s * detector.sample_rate))
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
    for i, block in enumerate(_read_ahead(audio.stream(path, sample_rate=detector.sample_rate, block_s=cfg.block_s))):
        if i >= skip:
            detector.feed(block)
            if checkpoint is not None:
                ckpt.save_state(checkpoint, detector.state)
        if progress is not None:
            progress(len(block) / detector.sample_rate)
    result = detector.finish()
    if checkpoint is not None:
        ckpt.clear_state(checkpoint)
    return result


def _read_ahead(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The same blocks, the next one decoded in a background thread while this one is processed
    (decoding releases the GIL); decoder errors are raised here, in order."""
    with ThreadPoolExecutor(1, thread_name_prefix="respira-decode") as pool:
        pending = pool.submit(next, blocks, None)
        while (block := pending.result()) is not None:
            pending = pool.submit(next, blocks, None)
            yield block
