"""Training losses and the early-stopping comparison; what else differs between tasks is in respira.tasks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from respira.errors import ConfigError

LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse"})


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
