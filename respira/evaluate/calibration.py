"""Calibration: confidence bins (reliability diagram, ECE) and how confident right and wrong answers are."""

from __future__ import annotations

import numpy as np

N_BINS = 15


def confidence_bins(confidence: np.ndarray, *, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index [n] of each confidence in [0, 1]: equal-width bins (lo, hi], 0 falling in the first."""
    return np.clip(np.ceil(np.asarray(confidence, dtype=float) * n_bins).astype(int) - 1, 0, n_bins - 1)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, *, n_bins: int = N_BINS) -> list[dict]:
    """Non-empty bins, low to high: {lo, hi, n, confidence (mean), accuracy}; the data of a reliability diagram."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    index = confidence_bins(confidence, n_bins=n_bins)
    out = []
    for b in np.unique(index):
        inside = index == b
        out.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "n": int(inside.sum()),
                "confidence": float(confidence[inside].mean()),
                "accuracy": float(correct[inside].mean()),
            }
        )
    return out


def confidence_summary(confidence: np.ndarray, correct: np.ndarray) -> dict:
    """Mean / median confidence of right and of wrong answers (None where there are none) and their counts."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    out: dict = {"n_right": int(correct.sum()), "n_wrong": int((~correct).sum())}
    for name, mask in (("right", correct), ("wrong", ~correct)):
        out[f"mean_confidence_{name}"] = float(confidence[mask].mean()) if mask.any() else None
        out[f"median_confidence_{name}"] = float(np.median(confidence[mask])) if mask.any() else None
    return out
