"""respira: find, count and classify respiratory and vocal sounds in audio.

    import respira
    model = respira.load_model("cough")          # a built-in name or a .respira bundle path
    rows = model.predict(["a.wav", "b.webm"])    # one dict per clip: file, label, score, ...
    result = respira.evaluate("vocal", "manifest.csv", out="eval")   # metrics.json, report.md, ...
    run = respira.detect(["night.flac"], out="night/")       # long recordings -> events, report
    metrics = respira.evaluate_events("night/events.csv", "annotations.csv", out="night/eval")
    respira.monitor("stdin", db="night.sqlite")              # live input -> events in SQLite

The public names are imported on first use, so `import respira` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "__version__", "detect", "evaluate", "evaluate_events", "load_model", "monitor"]

_LAZY = {"load_model": "respira.inference", "Model": "respira.inference", "evaluate_events": "respira.detect"}
"""Public name -> the module that defines it, imported when the name is first used."""
_JOBS = ("detect", "evaluate", "monitor")
"""Jobs named after their sub-package, which is callable: respira.evaluate(model, manifest, out=...),
respira.detect(paths, out=...), respira.monitor(source, db=...)."""


def __getattr__(name: str) -> Any:
    if name in _JOBS:
        return importlib.import_module(f"{__name__}.{name}")  # importing it sets the attribute
    if name not in _LAZY:
        raise AttributeError(f"module 'respira' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_JOBS])
