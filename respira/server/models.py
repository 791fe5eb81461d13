"""The models a server holds: loaded once at start-up, described for /api/v1/models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from respira.errors import ConfigError
from respira.inference import Model, load_model


def load_models(names: tuple[str, ...]) -> dict[str, Model]:
    """Built-in names or bundle paths -> {model name: Model}, in order; ConfigError when two share a name."""
    models: dict[str, Model] = {}
    for name in names:
        model = load_model(name)
        if model.name in models:
            raise ConfigError(f"two models are named {model.name!r} ({name}); rename one bundle file")
        models[model.name] = model
    return models


def model_info(model: Model) -> dict:
    return {
        "name": model.name, "task": model.task, "classes": list(model.classes), "positive": model.positive,
        "threshold": float(model.meta.thresholds["decision"]), "sample_rate": model.sample_rate,
        "clip_seconds": model.clip_s, "metrics": _finite(model.meta.provenance.get("metrics", {})),
    }


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities (which JSON cannot carry) become null."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
