"""respira: find, count and classify respiratory and vocal sounds in audio.

    import respira
    model = respira.load_model("cough")          # a built-in name or a .respira bundle path
    rows = model.predict(["a.wav", "b.webm"])    # one dict per clip: file, label, score, ...

`load_model` and `Model` are imported on first use, so `import respira` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "__version__", "load_model"]

_LAZY = {"load_model": "respira.inference", "Model": "respira.inference"}
"""Public name -> the module that defines it, imported when the name is first used."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'respira' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
