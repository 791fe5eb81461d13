"""A stand-in for a cough model in detector tests: it knows where the sounds were planted.

The pipeline's logic is under test, not a model: `PlantedScorer` recognises each window it is
given by its samples (every window on the hop grid of the audio it was built from) and scores
it by how much of a planted cough lies inside it. A window that is not on the grid fails the test.
"""

from __future__ import annotations

import hashlib

import numpy as np


class PlantedScorer:
    classes = ("other", "cough")
    positive = "cough"

    def __init__(self, y: np.ndarray, planted, *, sr: int = 16000, clip_s: float = 1.0, hop_s: float = 0.25,
                 other_score: float = 0.3) -> None:
        """planted: objects with start, end, label (seconds). A window's score is the largest
        fraction of a planted cough inside it; other labels give other_score times that fraction."""
        self.sample_rate, self.clip_s = sr, clip_s
        self.calls = 0
        win, hop = round(clip_s * sr), round(hop_s * sr)
        n = 1 if len(y) <= win else -(-(len(y) - win) // hop) + 1
        padded = np.concatenate([np.asarray(y, np.float32), np.zeros(win + hop, np.float32)])
        self.table: dict[bytes, float] = {}
        for k in range(n):
            a, b = k * hop / sr, (k * hop + win) / sr
            score = 0.0
            for e in planted:
                inside = max(0.0, min(b, e.end) - max(a, e.start)) / (e.end - e.start)
                score = max(score, inside * (1.0 if e.label == "cough" else other_score))
            key = _key(padded[k * hop: k * hop + win])
            self.table[key] = max(score, self.table.get(key, 0.0))

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        self.calls += len(windows)
        assert windows.dtype == np.float32 and windows.shape[1] == round(self.clip_s * self.sample_rate)
        p = np.array([self.table[_key(w)] for w in windows], np.float32)
        return np.stack([1 - p, p], axis=1)


def _key(w: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(w, np.float32).tobytes(), digest_size=16).digest()
