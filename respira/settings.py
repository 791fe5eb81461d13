"""Settings from one YAML file and `section.key=value` overrides, built into frozen dataclasses.

Every command that takes `--config FILE.yaml` and `--set section.key=value` reads them here,
with the machinery of the training config (`respira.config`): values parsed as YAML, every key,
type and bound checked, each ConfigError naming the full key (`detect.threshold: ...`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from respira.errors import ConfigError

T = TypeVar("T")


def read_settings(path: str | os.PathLike | None, overrides: Sequence[str] = (), *,
                  sections: Sequence[str]) -> dict[str, dict]:
    """The YAML file at `path` (None: none) with `a.b=value` overrides applied -> {section: mapping}
    for each of `sections` (empty when absent); ConfigError for a bad file, override or section."""
    from respira.config import _unknown, apply_override

    raw = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    for key in raw:
        if key not in sections:
            raise ConfigError(_unknown(str(key), list(sections)))
    for name in sections:
        if raw.get(name) is not None and not isinstance(raw[name], Mapping):
            raise ConfigError(f"{name}: expected a mapping of keys, got {raw[name]!r}")
    return {name: dict(raw.get(name) or {}) for name in sections}


def build(cls: type[T], raw: Mapping[str, Any], *, prefix: str) -> T:
    """An instance of the frozen dataclass `cls` from plain values, every key and type checked
    (ConfigError naming `prefix.key`); the class checks its own bounds on construction."""
    from respira.config import _build

    return _build(cls, raw, prefix)


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top")
    return raw
