"""Cutting a recording into model windows: the one grid of clip prediction, strip and picked scoring.

Window k of a `WindowGrid` is y[k * hop : k * hop + length]. A signal of n samples has
`count(n)` windows: window 0, then one every hop until one reaches the end. Past the end the
detector's windows are zero-padded (`fit`, `windows`); a clip's last window is moved back to
end at the end instead (`respira.inference.clip_windows`). numpy only, so that the detector
imports it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowGrid:
    """Windows `length` samples long every `hop` samples (both >= 1)."""

    hop: int
    length: int

    def count(self, samples: int) -> int:
        """Windows over a signal of `samples` samples (0 for none, 1 up to one window long)."""
        return 0 if samples < 1 else 1 + max(0, -(-(samples - self.length) // self.hop))

    def starts(self, samples: int) -> np.ndarray:
        """Where the `count(samples)` windows start."""
        return np.arange(self.count(samples)) * self.hop

    def reach(self, n: int) -> int:
        """Samples that n consecutive windows cover."""
        return (n - 1) * self.hop + self.length

    def fit(self, y: np.ndarray, n: int) -> np.ndarray:
        """y [samples] cut, or zero-padded at its end, to the samples of windows 0 .. n-1."""
        need = self.reach(n)
        return np.pad(y, (0, need - len(y))) if len(y) < need else y[:need]

    def windows(self, y: np.ndarray, ks: np.ndarray) -> np.ndarray:
        """Windows ks (ascending, not empty) of y [samples] zero-padded past its end -> [len(ks), length]."""
        return np.lib.stride_tricks.sliding_window_view(self.fit(y, int(ks[-1]) + 1), self.length)[:: self.hop][ks]
