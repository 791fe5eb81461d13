"""Evaluation figures as PNG files: confusion matrices, ROC curves, reliability diagram, regression scatter.

Each function draws on its own `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no
global state, safe in threads and without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

_DPI = 120


def plot_confusion(panels: Sequence[tuple[str, np.ndarray, list[str]]], *, path: Path) -> Path:
    """One panel per (title, counts [k, k] true x predicted, class names): counts written in each
    cell, colours normalised per true class (row) so rare classes read as clearly as common ones."""
    k = max(len(names) for _, _, names in panels)
    side = min(max(3.2, 0.55 * k + 2.0), 14.0)
    fig, axes = _figure(len(panels), width=side, height=side)
    for ax, (title, counts, names) in zip(axes, panels, strict=True):
        counts = np.asarray(counts)
        rows = counts.sum(1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        size = max(5, min(10, 140 // max(len(names), 1)))
        for i, j in np.ndindex(counts.shape):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=size,
                color="white" if share[i, j] > 0.6 else "black",
            )
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, rotation=45 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center")
        ax.set_yticks(ticks, names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, path)


def plot_roc(curves: dict[str, dict], *, path: Path, title: str = "ROC") -> Path:
    """ROC curves, one per name -> `metrics.binary_curve` output, with each AUC in the legend."""
    fig, (ax,) = _figure(1, width=5.5, height=5.0)
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
    for name, curve in curves.items():
        if curve["auc"] is not None:
            ax.plot(curve["fpr"], curve["tpr"], linewidth=1.6, label=f"{name} (AUC {curve['auc']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_reliability(bins: list[dict], *, path: Path, title: str = "Reliability") -> Path:
    """Reliability diagram of `calibration.reliability_bins`: accuracy per confidence bin against
    the diagonal of perfect calibration, with the share of predictions per bin below."""
    fig, (top, bottom) = _figure(2, width=5.5, height=6.5, rows=2, height_ratios=(3, 1))
    lo = np.array([b["lo"] for b in bins])
    width = np.array([b["hi"] - b["lo"] for b in bins])
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    top.bar(
        lo, [b["accuracy"] for b in bins], width=width, align="edge", edgecolor="black", alpha=0.75, label="accuracy"
    )
    top.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        "o",
        color="C3",
        markersize=4,
        label="mean confidence",
    )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title)
    top.legend(loc="upper left", fontsize=8)
    total = sum(b["n"] for b in bins) or 1
    bottom.bar(lo, [b["n"] / total for b in bins], width=width, align="edge", color="0.5")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("share")
    return _save(fig, path)


def plot_regression(y_true: np.ndarray, y_pred: np.ndarray, *, path: Path, title: str = "Predicted vs true") -> Path:
    """Scatter of predictions against targets with the identity line."""
    fig, (ax,) = _figure(1, width=5.5, height=5.0)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", linestyle="--", linewidth=1, label="perfect")
    ax.scatter(y_true, y_pred, s=10, alpha=0.6)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _figure(n: int, *, width: float, height: float, rows: int = 1, height_ratios: tuple[float, ...] | None = None):
    """A Figure with the Agg canvas and n axes: side by side, or stacked when `rows` > 1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 1 if rows > 1 else n
    fig = Figure(figsize=(width * cols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        rows, cols, squeeze=False, gridspec_kw={"height_ratios": height_ratios} if height_ratios else None
    )
    return fig, list(axes.ravel())


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
