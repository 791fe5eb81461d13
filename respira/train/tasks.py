"""What differs between tasks: targets from labels, the loss, outputs and validation metrics.

Targets are always float matrices [rows, outputs] so that MixUp can blend them: one-hot for
classification, multi-hot for multilabel, the value for regression ([rows, 1]).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from respira.errors import ConfigError, DataError

MULTILABEL_SEPARATOR = "+"
MULTILABEL_ALL = "both"
LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse"})


@dataclass(frozen=True)
class Task:
    """The task-specific functions; `metric` is the default early-stopping metric.

    outputs: logits -> probabilities (values). logits: the inverse, pooled outputs -> what the
    loss takes in place of logits, so that the validation loss is the loss of the pooled outputs.
    """

    targets: Callable[[pd.Series, Sequence[str]], np.ndarray]
    outputs: Callable[[torch.Tensor], torch.Tensor]
    logits: Callable[[torch.Tensor], torch.Tensor]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]
    metric: str


def loss_fn(name: str, *, label_smoothing: float = 0.0, weights: torch.Tensor | None = None
            ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(logits [batch, outputs], targets [batch, outputs]) -> scalar loss for loss `name`.

    weights: per-class weights (ce) or positive weights (bce), from class balancing.
    """
    losses: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "ce": lambda z, y: F.cross_entropy(z, y, weight=weights, label_smoothing=label_smoothing),
        "bce": lambda z, y: F.binary_cross_entropy_with_logits(
            z, y * (1 - label_smoothing) + label_smoothing / 2, pos_weight=weights),
        "mae": lambda z, y: F.l1_loss(z, y),
        "mse": lambda z, y: F.mse_loss(z, y),
        "huber": lambda z, y: F.huber_loss(z, y, delta=1.0),
    }
    if name not in losses:
        raise ConfigError(f"task.loss: unknown loss {name!r} (known: {', '.join(losses)})")
    return losses[name]


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether `value` of `metric` improves on `best` (None: nothing yet)."""
    if best is None or np.isnan(best):
        return not np.isnan(value)
    return value < best if metric in LOWER_IS_BETTER else value > best


# --- targets ---------------------------------------------------------------------------------


def _class_targets(labels: pd.Series, classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), np.float32)
    for row, label in enumerate(labels):
        if label not in index:
            raise DataError(f"row {row + 1}: label {label!r} is not one of the classes {list(classes)}")
        out[row, index[label]] = 1.0
    return out


def _multilabel_targets(labels: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """'crackle+wheeze' or 'both' -> all named / all classes; a label naming none (e.g. 'normal') -> zeros."""
    out = np.zeros((len(labels), len(classes)), np.float32)
    for row, label in enumerate(labels):
        present = set(classes) if label == MULTILABEL_ALL else set(str(label).split(MULTILABEL_SEPARATOR))
        out[row] = [c in present for c in classes]
    return out


def _regression_targets(values: pd.Series, classes: Sequence[str]) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    if len(bad):
        raise DataError(f"row {bad[0] + 1}: {classes[0]} value {values.iloc[bad[0]]!r} is not a number")
    return numbers.to_numpy(np.float32)[:, None]


# --- pooled outputs -> logits --------------------------------------------------------------------

_EPS = 1e-12
"""Probabilities are clamped to [_EPS, 1 - _EPS] before log / logit: a saturated clip costs a finite loss."""


def _log_probabilities(p: torch.Tensor) -> torch.Tensor:
    """Probabilities [rows, classes] (each row summing to 1) -> log p: softmax gives p back, so
    cross-entropy of it is the negative log-likelihood of p."""
    return torch.log(p.double().clamp_min(_EPS)).float()


def _logit(p: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities -> their logits (the inverse of sigmoid)."""
    return torch.logit(p.double(), eps=_EPS).float()


# --- validation metrics ----------------------------------------------------------------------


def _classification_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    truth, guess = y.argmax(axis=1), p.argmax(axis=1)
    out = {
        "accuracy": float(np.mean(truth == guess)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, guess)),
        "macro_f1": float(f1_score(truth, guess, average="macro", labels=np.unique(truth), zero_division=0)),
    }
    if p.shape[1] == 2 and len(np.unique(truth)) == 2:
        out["roc_auc"] = float(roc_auc_score(truth, p[:, 1]))
    return out


def _multilabel_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    guess = p >= 0.5
    truth = y >= 0.5
    return {
        "accuracy": float(np.mean((guess == truth).all(axis=1))),
        "macro_f1": float(f1_score(truth, guess, average="macro", zero_division=0)),
    }


def _regression_metrics(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    error = p[:, 0] - y[:, 0]
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}


TASKS: dict[str, Task] = {
    "classification": Task(_class_targets, lambda z: torch.softmax(z, dim=-1), _log_probabilities,
                           _classification_metrics, "balanced_accuracy"),
    "multilabel": Task(_multilabel_targets, torch.sigmoid, _logit, _multilabel_metrics, "macro_f1"),
    "regression": Task(_regression_targets, lambda z: z, lambda v: v, _regression_metrics, "mae"),
}
"""task type -> its Task."""
