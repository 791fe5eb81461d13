"""Modules that are also the job they run: `respira.detect(...)`, `respira.evaluate(...)`, `respira.monitor(...)`.

`respira.detect` and `respira.evaluate` are packages and `respira.monitor` a module, and Python sets a package's
attribute to its sub-module whenever that is imported, so a function of the same name in
`respira/__init__.py` would not survive `import respira.detect.config`. Instead the module
itself is callable; its other names stay where they are (`respira.detect.DetectConfig`).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def callable_module(name: str, job: Callable[..., Any]) -> None:
    """Make calling the module `name` (already in sys.modules) call `job`."""

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return job(*args, **kwargs)

    sys.modules[name].__class__ = CallableModule
