"""The detector's data: a file's result, and the state carried between blocks (for resuming)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from respira.detect.events import Event
from respira.detect.gate import GateState


@dataclass(frozen=True, eq=False)
class FileResult:
    """What the detector found in one file.

    candidates: every burst scored >= min(candidate_floor, threshold), in time order; `events`
    are those >= threshold. scores: [windows] float16 positive-class probability of window k
    (covering [k * hop_s, k * hop_s + window_s) s), 0 where the gate left it unscored.
    duration_s: audio seconds; active_s: seconds within gate_pad_s of a loud frame.
    """

    file: str
    candidates: tuple[Event, ...]
    scores: np.ndarray
    hop_s: float
    window_s: float
    duration_s: float
    active_s: float
    threshold: float

    @property
    def events(self) -> list[Event]:
        return [e for e in self.candidates if e.score >= self.threshold]

    @property
    def times(self) -> np.ndarray:
        """[windows] float64: the centre of each window, seconds."""
        return np.arange(len(self.scores)) * self.hop_s + self.window_s / 2


@dataclass
class Chunk:
    """What one block added: frame levels and floors, and the scores of the windows decided."""

    db: np.ndarray
    floor: np.ndarray
    scores: np.ndarray


@dataclass
class StreamState:
    """Everything a StreamDetector carries between blocks (saved by respira.detect.checkpoint)."""

    gate: GateState = field(default_factory=GateState)
    blocks: int = 0  # blocks fed
    samples: int = 0  # samples fed
    next_window: int = 0  # the first window not yet scored
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # samples from buffer_start on
    buffer_start: int = 0
    loud_tail: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # loud flags from frame loud_start on
    loud_start: int = 0
    chunks: list[Chunk] = field(default_factory=list)
