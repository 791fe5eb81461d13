"""Settings from YAML and `section.key=value` overrides, built into checked frozen dataclasses:
the one config machinery of respira (the training config, `respira.config`; the detector's,
`respira.detect.config`; the server's).

`read_settings` reads a YAML file of sections and applies overrides (values parsed as YAML).
`build` makes a frozen dataclass from plain values, every key and type checked and converted
("1e-3" -> 0.001, lists -> tuples, relative paths of `path_field`s -> absolute);
`typing.Annotated[T, builder]` hands a key to `builder(raw, key)`. A class deriving from
`Bounded` checks its `bounded` fields on construction. Every ConfigError names the full key:
``train.lr: must be > 0, got -1``, ``unknown key 'detect.treshold' (did you mean 'detect.threshold'?)``.
Only `respira.errors` is imported at module level (no torch): any layer may use it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union

from respira.errors import ConfigError

T = TypeVar("T")


def read_settings(path: str | os.PathLike | None, overrides: Sequence[str] = (), *,
                  sections: Sequence[str]) -> dict[str, dict]:
    """The YAML file at `path` (None: none) with `a.b=value` overrides applied -> {section: mapping}
    for each of `sections` (empty when absent); ConfigError for a bad file, override or section."""
    raw = _read_yaml(Path(path), sections) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    for key in raw:
        if key not in sections:
            raise ConfigError(_unknown(str(key), list(sections)))
    for name in sections:
        if raw.get(name) is not None and not isinstance(raw[name], Mapping):
            raise ConfigError(f"{name}: expected a mapping of keys, got {_shown(raw[name])}")
    return {name: dict(raw.get(name) or {}) for name in sections}


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in the nested dict `raw` (value parsed as YAML; list items by index)."""
    import yaml

    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {' '.join(str(e).split())}") from None
    node: Any = raw
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {item!r}: {where}: no list item {part} (it has {len(node)})")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth])} is not a section")
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(index), (dict, list)):
                node[index] = {}
            node = node[index]


def build(cls: type[T], raw: Any, *, prefix: str) -> T:
    """An instance of the dataclass `cls` from the mapping `raw` (plain values, as YAML gives them),
    every key and type checked; `prefix` is its key ("" at the top)."""
    raw = check_keys(cls, raw, prefix=prefix)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls, include_extras=True)
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _value(hints[name], value, key)
        if fields[name].metadata.get("path") and value is not None:
            value = str(Path(value).expanduser().resolve())
        values[name] = value
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{prefix or 'config'}: missing key {prefix + '.' if prefix else ''}{missing[0]}")
    return cls(**values)


def check_keys(cls: type, raw: Any, *, prefix: str) -> Mapping[str, Any]:
    """`raw` (None: empty) if it is a mapping of field names of the dataclass `cls`; ConfigError otherwise."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {_shown(raw)}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            raise ConfigError(_unknown(f"{prefix}.{key}" if prefix else str(key),
                                       [f"{prefix}.{name}" if prefix else name for name in names]))
    return raw


def bounded(default: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A dataclass field whose number a `Bounded` class checks against the given bounds on construction."""
    return dataclasses.field(default=default, metadata={"gt": gt, "ge": ge, "le": le})


def path_field(default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field holding a file path, which `build` resolves against the current directory."""
    return dataclasses.field(default=default, metadata={"path": True})


class Bounded:
    """Base of a config dataclass whose `bounded` fields are checked on construction, each
    ConfigError naming the field's full key: ``class TrainConfig(Bounded, key="train")``."""

    settings_key: ClassVar[str]

    def __init_subclass__(cls, *, key: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.settings_key = key

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_bounds(f, getattr(self, f.name), f"{self.settings_key}.{f.name}")


def as_float(value: Any) -> float | None:
    """A float from a YAML number or a numeric string ("1e-3": PyYAML leaves it a string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# --- reading, converting, checking ----------------------------------------------------------------


def _read_yaml(path: Path, sections: Sequence[str]) -> dict:
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
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(sections)}) at the top")
    return raw


def _value(hint: Any, value: Any, key: str) -> Any:
    """`value` checked (and converted, e.g. "1e-3" -> 0.001, list -> tuple) against type `hint`."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return hint.__metadata__[0](value, key)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _value(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(hint)}, got {_shown(value)}")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}, got {_shown(value)}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, prefix=key)
    if origin is tuple:
        return _tuple(typing.get_args(hint), value, key)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_shown(value)}")
        return dict(value)
    return _scalar(hint, value, key)


def _tuple(args: tuple, value: Any, key: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{key}: expected a list, got {_shown(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_value(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{key}: expected a list of {len(args)} values, got {_shown(value)}")
    return tuple(_value(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))


def _scalar(hint: type, value: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {_shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {_shown(value)}")
    if hint is float:
        number = as_float(value)
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {_shown(value)}")
        return number
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {_shown(value)}")
    raise TypeError(f"config loader: unsupported type {hint!r} for {key}")


def _describe(hint: Any) -> str:
    """What a value of type `hint` looks like, for messages ("an integer or one of folds")."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(o) for o in typing.get_args(hint) if o is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list"}
    return names.get(origin or hint, "a mapping")


def _check_bounds(f: dataclasses.Field, value: Any, key: str) -> None:
    if not f.metadata or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    gt, ge, le = f.metadata.get("gt"), f.metadata.get("ge"), f.metadata.get("le")
    if gt is not None and not value > gt:
        raise ConfigError(f"{key}: must be > {gt:g}, got {value:g}")
    if ge is not None and not value >= ge:
        raise ConfigError(f"{key}: must be >= {ge:g}, got {value:g}")
    if le is not None and not value <= le:
        raise ConfigError(f"{key}: must be <= {le:g}, got {value:g}")


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(k.rsplit('.', 1)[-1] for k in known)})"
    return f"unknown key {key!r}{hint}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
