"""The model registry: names -> nn.Module classes, and `build_model` to make one by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from respira.errors import ModelError

ModelFactory = Callable[..., nn.Module]
MODELS: dict[str, ModelFactory] = {}
"""Registered models by name: nn.Module classes or functions returning one, each called as
(*, n_classes, in_channels, n_bins, **params)."""

_COMMON = ("n_classes", "in_channels", "n_bins")


def register(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator for a model class or factory function: make it available to `build_model` as `name`."""

    def add(factory: ModelFactory) -> ModelFactory:
        if name in MODELS:
            raise ValueError(f"model name {name!r} is already registered to {MODELS[name].__name__}")
        MODELS[name] = factory
        return factory

    return add


def model_params(name: str) -> dict[str, Any]:
    """The model-specific parameters of `name` with their defaults (what `build_model` accepts)."""
    return {
        p.name: p.default
        for p in inspect.signature(_lookup(name)).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in _COMMON
    }


def build_model(
    name: str,
    *,
    n_classes: int,
    in_channels: int | tuple[int, int] = 1,
    n_bins: int | tuple[int, int] = 64,
    **params: Any,
) -> nn.Module:
    """A new, randomly initialised model `name` mapping [batch, in_channels, n_bins, frames] -> logits [batch, n_classes].

    in_channels, n_bins: ints; "dual" also takes pairs (mfcc, logmel). params: the model's own
    options (see `model_params(name)`). Raises ModelError for an unknown name, an unknown
    parameter or values the model cannot be built with.
    """
    known = model_params(name)
    unknown = sorted(set(params) - set(known))
    if unknown:
        accepted = ", ".join(known) or "none"
        raise ModelError(f"unknown parameter(s) {', '.join(unknown)} for model {name!r}; it accepts: {accepted}")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ModelError(f"n_classes must be a positive integer, got {n_classes!r}")
    try:
        return MODELS[name](n_classes=n_classes, in_channels=in_channels, n_bins=n_bins, **params)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ModelError(f"cannot build model {name!r} with in_channels={in_channels}, n_bins={n_bins}, {params}: {e}") from e


def _lookup(name: str) -> ModelFactory:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]
