"""Model bundles: one safetensors file with every ensemble member and everything inference needs.

The weights of member ``i`` are stored under ``m{i}.<state_dict key>``; the JSON of
`BundleMeta` sits in the safetensors header metadata under ``"respira"``. Loading reads
tensors and JSON only (never a pickle). Built-in bundles ship in
``respira/assets/models/{name}.respira`` and are addressed by name (``"cough"``, ``"vocal"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from respira.errors import ModelError
from respira.tasks import POOLINGS, TASK_NAMES, TASKS

if TYPE_CHECKING:
    from torch import nn

FORMAT_VERSION = 2  # 2: clip_s (1 said clip_seconds, still read)
"""The bundle layout this package writes; it reads this version and older ones."""

SUFFIX = ".respira"
BUILTIN_DIR = Path(__file__).resolve().parent / "assets" / "models"
SIDECAR_FORMAT = "respira-onnx"
SIDECAR_VERSION = 2  # 2: the raw-audio graph (input "audio"), clip_s
"""The JSON sidecar beside an exported ONNX file (see respira.export) carries the bundle metadata."""
_META_KEY = "respira"
_MEMBERS_KEY = "members"


@dataclass(frozen=True)
class BundleMeta:
    """Everything inference needs besides the weights.

    task: "classification" | "multilabel" | "regression". classes: class names, in the order
    of the model's outputs (regression: one name, the target column, e.g. "cough_detected").
    features: `FeatureConfig.to_dict()`. model: {"name": registry name, "params": `build_model`
    keyword arguments including n_classes, in_channels, n_bins}. clip_s: the window the
    model sees, in seconds. positive: the positive class of a binary task. pooling: how the window scores
    of a clip longer than clip_s are pooled ("mean" | "max"). thresholds: "decision"
    (and, for multilabel, optionally one per class name). provenance: data, config, metrics,
    version, created, command.
    """

    task: str
    classes: tuple[str, ...]
    features: dict
    model: dict
    clip_s: float
    positive: str | None = None
    pooling: str = "mean"
    thresholds: dict = field(default_factory=lambda: {"decision": 0.5})
    provenance: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        problems = _problems(self)
        if problems:
            raise ModelError(f"invalid model bundle metadata: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BundleMeta:
        """Build from the JSON form; an unknown key or a newer format_version -> ModelError."""
        d = {("clip_s" if k == "clip_seconds" else k): v for k, v in d.items()}  # bundles saved before the rename
        version = d.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelError(
                f"bundle format {version} was made by a newer respira (this one reads up to "
                f"format {FORMAT_VERSION}); upgrade respira"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in known]
        if unknown:
            raise ModelError(f"invalid model bundle metadata: unknown key(s) {', '.join(unknown)}")
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ModelError(f"invalid model bundle metadata: missing key(s) {', '.join(missing)}")
        return cls(**d)


def _problems(meta: BundleMeta) -> list[str]:
    """What is wrong with `meta`, one phrase each (empty when it is usable)."""
    n = len(meta.classes)
    params = meta.model.get("params", {}) if isinstance(meta.model, Mapping) else {}
    n_out = params.get("n_classes")
    task = TASKS.get(meta.task)
    binary = task is not None and task.exclusive and n == 2
    fewest = task.min_classes if task is not None else 0
    rules = [
        (task is not None, f"task must be one of {', '.join(TASK_NAMES)}, got {meta.task!r}"),
        (meta.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}, got {meta.pooling!r}"),
        (len(set(meta.classes)) == n, f"class names repeat: {list(meta.classes)}"),
        (task is None or not task.values or n == 1,
         f"a {meta.task} bundle names one target, got classes {list(meta.classes)}"),
        (n >= fewest, f"a {meta.task} bundle needs at least {fewest} class(es), got {list(meta.classes)}"),
        (meta.positive is None or meta.positive in meta.classes,
         f"positive class {meta.positive!r} is not one of the classes {list(meta.classes)}"),
        (meta.positive is None or binary, "a positive class is only meaningful for a 2-class classification bundle"),
        (isinstance(meta.model, Mapping) and isinstance(meta.model.get("name"), str),
         "model must be {'name': ..., 'params': {...}}"),
        (n_out is None or n_out == n or (binary and n_out == 1),
         f"model params n_classes={n_out} does not match {n} class(es)"),
        (meta.clip_s > 0, f"clip_s must be > 0, got {meta.clip_s}"),
        (isinstance(meta.thresholds, Mapping) and "decision" in meta.thresholds,
         "thresholds must hold a 'decision' value"),
    ]
    return [message for ok, message in rules if not ok]


def save_bundle(path: str | os.PathLike, models: Sequence[nn.Module], meta: BundleMeta) -> None:
    """Write the ensemble `models` (one or more members of meta.model's architecture) and `meta` to `path`."""
    from safetensors.torch import save_file

    if not models:
        raise ModelError("save_bundle: no models given")
    tensors = {
        f"m{i}.{key}": value.detach().to("cpu").clone().contiguous()
        for i, model in enumerate(models)
        for key, value in model.state_dict().items()
    }
    try:
        metadata = {_META_KEY: json.dumps(meta.to_dict()), _MEMBERS_KEY: str(len(models))}
    except TypeError as e:
        raise ModelError(f"save_bundle: the metadata must be plain JSON (numbers, text, lists, dicts): {e}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def read_meta(path_or_name: str | os.PathLike) -> BundleMeta:
    """The metadata of a bundle (a path or a built-in name) without building its models."""
    return _read(resolve(path_or_name), with_weights=False)[1]


def read_sidecar(onnx_path: str | os.PathLike) -> BundleMeta:
    """The bundle metadata from the JSON sidecar of the exported ONNX file `onnx_path`;
    ModelError when either is missing or the sidecar is not ours."""
    path = Path(onnx_path).with_suffix(".json")
    if not Path(onnx_path).is_file():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{onnx_path}: its sidecar {path.name} is missing (export writes both)") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable ONNX sidecar: {e}") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "bundle" not in data:
        raise ModelError(f"{path}: not a respira ONNX sidecar")
    if data.get("format_version", 0) > SIDECAR_VERSION:
        raise ModelError(f"{path}: made by a newer respira (sidecar format {data['format_version']}); upgrade respira")
    try:
        return BundleMeta.from_dict(data["bundle"])
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None


def load_bundle(path_or_name: str | os.PathLike) -> tuple[list[nn.Module], BundleMeta]:
    """A bundle (a path or a built-in name) -> (ensemble members in eval mode, meta)."""
    path = resolve(path_or_name)
    state, meta = _read(path, with_weights=True)
    from respira.models import build_model

    params = dict(meta.model.get("params", {}))
    try:
        members = [build_model(meta.model["name"], **params) for _ in state]
    except Exception as e:  # an unknown name or bad params, in whatever type the registry raises
        raise ModelError(f"{path}: cannot build model {meta.model['name']!r}: {e}") from None
    for i, (member, weights) in enumerate(zip(members, state)):
        try:
            member.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ModelError(f"{path}: weights of member {i} do not fit {meta.model['name']!r}: {e}") from None
        member.eval()
    return members, meta


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A bundle path as given, or the built-in bundle of that name (a bare name without a suffix)."""
    text = os.fspath(path_or_name)
    path = Path(text)
    if path.is_file() or path.suffix or os.sep in text or "/" in text:
        return path
    return builtin_path(text)


def builtin_names() -> list[str]:
    """Names of the built-in bundles installed with this package, sorted."""
    return sorted(p.stem for p in BUILTIN_DIR.glob(f"*{SUFFIX}")) if BUILTIN_DIR.is_dir() else []


def builtin_path(name: str) -> Path:
    """The file of built-in bundle `name`; ModelError listing the installed ones when absent."""
    path = BUILTIN_DIR / f"{name}{SUFFIX}"
    if not path.is_file():
        names = builtin_names()
        listed = ", ".join(names) if names else "none are installed yet"
        raise ModelError(f"no built-in model named {name!r} (available: {listed}); pass a bundle path instead")
    return path


def _read(path: Path, *, with_weights: bool) -> tuple[list[dict], BundleMeta]:
    """(per-member state dicts, or [] without weights; meta) of the bundle file `path`."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise ModelError(f"model bundle not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            keys = list(f.keys()) if with_weights else []
            tensors = {key: f.get_tensor(key) for key in keys}
    except (SafetensorError, OSError) as e:
        raise ModelError(f"{path}: not a readable model bundle (truncated or not a bundle: {e})") from None
    if _META_KEY not in header:
        raise ModelError(f"{path}: a safetensors file but not a respira model bundle (no respira metadata)")
    try:
        meta = BundleMeta.from_dict(json.loads(header[_META_KEY]))
    except (ValueError, TypeError) as e:
        raise ModelError(f"{path}: unreadable bundle metadata: {e}") from None
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    if not with_weights:
        return [], meta
    n = int(header.get(_MEMBERS_KEY, "1"))
    state: list[dict] = [{} for _ in range(n)]
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        index = int(prefix[1:]) if prefix[:1] == "m" and prefix[1:].isdigit() else -1
        if not 0 <= index < n:
            raise ModelError(f"{path}: unexpected tensor {key!r} (expected m0..m{n - 1} prefixes)")
        state[index][name] = value
    return state, meta
