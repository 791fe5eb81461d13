"""The training configuration: one frozen dataclass per component, read from one YAML file.

``load_config(path, overrides)`` reads YAML, applies ``a.b=value`` overrides (values parsed as
YAML), checks every key, type and range (ConfigError naming the full key, e.g.
``unknown key 'train.lrr' (did you mean 'train.lr'?)``) and resolves relative paths against
the current directory. ``save_config`` writes the resolved config back as YAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from respira.errors import ConfigError
from respira.features import FeatureConfig
from respira.tasks import POOLINGS, TASK_NAMES, TASKS


def _num(default: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A dataclass field whose numeric value the loader checks against the given bounds."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "le": le})


@dataclass(frozen=True)
class SourceConfig:
    """One data source: an importer (`format` + `path` + importer `options`) or a manifest file
    (format "manifest"). `label`, when set, relabels every row of this source (e.g. all clips of
    a cough data set -> "cough"; the data set's own label stays in `source_label`)."""

    path: str
    format: str = "manifest"
    options: dict = field(default_factory=dict)
    label: Union[str, None] = None


@dataclass(frozen=True)
class SplitConfig:
    """Subject-disjoint split fractions; rows whose manifest already names a split keep it.
    method "stratified" balances labels and sources over the sides; "hash" puts each subject
    on a side fixed by (seed, subject) alone, the same in every config that shares the subject."""

    val: float = _num(0.15, ge=0.0, le=0.9)
    test: float = _num(0.15, ge=0.0, le=0.9)
    seed: int = 0
    method: Literal["stratified", "hash"] = "stratified"


@dataclass(frozen=True)
class DataConfig:
    """Which clips, which labels, how long a training example is.

    classes: for classification, keep only rows with these labels, in this order (None = all,
    sorted); for multilabel, the output labels (a row's label names the present ones, joined
    by "+", "both" = all of them, anything else = none). positive: derive a binary task,
    `positive` vs every other label (named `negative`). label_column: the column holding the
    label (for regression, the numeric target). exclude_subjects_of: a source whose subjects
    are dropped before splitting (never trained on, e.g. the calls a detector is tested on).
    clip_seconds: the model's window; longer clips are scored window by window at inference and
    the windows pooled by `pooling` ("mean", or "max": an event anywhere in the clip counts).
    auxiliary (classification with `classes`): more labels whose clips train extra outputs that
    the bundle leaves out, so the shared layers learn from more sounds. Their rows are training
    rows only; a subject's side of the split is decided by its rows of `classes` alone, so adding
    auxiliary labels never changes the validation or test clips.
    """

    sources: tuple[SourceConfig, ...] = ()
    label_column: str = "label"
    classes: Union[tuple[str, ...], None] = None
    positive: Union[str, None] = None
    negative: str = "other"
    exclude_subjects_of: Union[SourceConfig, None] = None
    auxiliary: tuple[str, ...] = ()
    clip_seconds: float = _num(4.0, gt=0.0, le=600.0)
    pooling: Literal[POOLINGS] = "mean"
    split: SplitConfig = SplitConfig()


@dataclass(frozen=True)
class ModelConfig:
    """A `respira.models` registry name, its extra keyword parameters, optional pretrained weights."""

    name: str = "compact_cnn"
    params: dict = field(default_factory=dict)
    pretrained: Union[str, None] = None


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation (all of it is off at validation, test and inference).

    shift: random crop / placement of each clip (else centred). crop: "random" anywhere in the
    clip, or "loudest": a window that contains the clip's loudest 20-ms frame (random position in
    training, centred on it otherwise), so a short event in a long clip is never cropped away.
    gain_db: random gain in
    +-gain_db. noise_snr_db: white noise at a random SNR in [low, high] dB, with probability
    noise_p. pitch_shift: resampling by up to +-pitch_shift semitones (changes speed too).
    time_stretch: spectrogram frames resampled by a rate in 1 +- time_stretch (pitch kept).
    spec_time_masks x up to spec_time_width (fraction of the frames) and spec_freq_masks x up
    to spec_freq_width bins: SpecAugment. mixup_alpha / mixup_p: MixUp of a batch with
    probability mixup_p, on the "waveform" or the "features" (mixup_on). background_p: with
    this probability per clip, add another clip of the batch from the eventless class (the negative
    of a derived binary task: speech, room noise) at a random SNR in background_snr_db (clip power
    over background power); labels are unchanged, since the added clip holds no event. balance:
    "sampler" (class-balanced sampling), "loss" (class-weighted loss) or "none".
    """

    shift: bool = True
    crop: Literal["random", "loudest"] = "random"
    gain_db: float = _num(6.0, ge=0.0, le=40.0)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    noise_p: float = _num(0.5, ge=0.0, le=1.0)
    pitch_shift: float = _num(0.0, ge=0.0, le=12.0)
    time_stretch: float = _num(0.0, ge=0.0, le=0.5)
    spec_time_masks: int = _num(2, ge=0)
    spec_time_width: float = _num(0.1, ge=0.0, le=1.0)
    spec_freq_masks: int = _num(2, ge=0)
    spec_freq_width: int = _num(8, ge=0)
    mixup_alpha: float = _num(0.4, ge=0.0)
    mixup_p: float = _num(0.5, ge=0.0, le=1.0)
    mixup_on: Literal["waveform", "features"] = "features"
    background_p: float = _num(0.0, ge=0.0, le=1.0)
    background_snr_db: tuple[float, float] = (0.0, 20.0)
    balance: Literal["sampler", "loss", "none"] = "sampler"


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: AdamW, linear warm-up then cosine decay per step, early stopping.

    batch_size is the global batch (split across processes under torchrun). grad_clip 0 = off.
    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". amp: mixed precision, on
    CUDA only. early_stop_metric: a validation metric ("auto" = balanced_accuracy /
    macro_f1 / mae by task; "loss" = validation loss). ensemble: train N models with seeds
    seed..seed+N-1 and ship them together, or "folds" (with group_kfold) to ship every fold's model.
    """

    epochs: int = _num(40, ge=1)
    batch_size: int = _num(32, ge=1)
    lr: float = _num(1e-3, gt=0.0)
    weight_decay: float = _num(1e-2, ge=0.0)
    warmup_epochs: float = _num(2.0, ge=0.0)
    grad_clip: float = _num(5.0, ge=0.0)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    early_stop_metric: str = "auto"
    patience: int = _num(10, ge=1)
    ensemble: Union[int, Literal["folds"]] = 1


@dataclass(frozen=True)
class TaskConfig:
    """What the model predicts: a task type of `respira.tasks` ("classification", "multilabel",
    "regression") and its loss, one of the task's losses (None: its default)."""

    type: Literal[TASK_NAMES] = "classification"
    loss: Union[str, None] = None
    label_smoothing: float = _num(0.0, ge=0.0, le=0.5)


@dataclass(frozen=True)
class ValidationConfig:
    """"holdout" (one validation split) or "group_kfold" (one model per subject-disjoint fold of
    the non-test data; mean +- std of the validation metrics in cv.json)."""

    strategy: Literal["holdout", "group_kfold"] = "holdout"
    folds: int = _num(5, ge=2)


@dataclass(frozen=True)
class Config:
    """Everything one training run needs."""

    data: DataConfig = DataConfig()
    features: FeatureConfig = FeatureConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    train: TrainConfig = TrainConfig()
    task: TaskConfig = TaskConfig()
    validation: ValidationConfig = ValidationConfig()

    @property
    def loss(self) -> str:
        """The task's loss, its default when none is set."""
        return self.task.loss or TASKS[self.task.type].losses[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values (tuples as lists)."""
        return _plain(self)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """Read the YAML config at `path`, apply `key.sub=value` overrides, check and resolve it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, train, ...) at the top")
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """A checked Config from plain values (as YAML gives them); relative paths become absolute."""
    cfg = _build(Config, raw, "")
    _check(cfg)
    return cfg


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write `cfg` (resolved: absolute paths, every default filled in) as YAML."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


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


# --- building and checking ------------------------------------------------------------------

_PATH_FIELDS = {(SourceConfig, "path"), (ModelConfig, "pretrained")}


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """An instance of dataclass `cls` from the mapping `raw`; `prefix` is its key ("" at the top)."""
    where = prefix or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_shown(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown(f"{prefix}.{key}" if prefix else str(key), [
                f"{prefix}.{name}" if prefix else name for name in fields]))
    if cls is FeatureConfig:
        try:
            return FeatureConfig.from_dict({k: _feature_value(v) for k, v in raw.items()})
        except ConfigError as e:  # "feature config: n_mels must be ..." -> "features.n_mels: must be ..."
            message = str(e).removeprefix("feature config: ")
            raise ConfigError(f"{prefix}.{message}") from None
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _value(hints[name], value, key)
        _check_bounds(fields[name], value, key)
        if (cls, name) in _PATH_FIELDS and value is not None:
            value = str(Path(value).expanduser().resolve())
        values[name] = value
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing key {prefix + '.' if prefix else ''}{missing[0]}")
    return cls(**values)


def _value(hint: Any, value: Any, key: str) -> Any:
    """`value` checked (and converted, e.g. "1e-3" -> 0.001, list -> tuple) against type `hint`."""
    origin = typing.get_origin(hint)
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
        return _build(hint, value, key)
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
        number = _as_float(value)
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


def _as_float(value: Any) -> float | None:
    """A float from a YAML number or a numeric string ("1e-3": PyYAML leaves it a string)."""
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


def _feature_value(value: Any) -> Any:
    """Feature values from YAML: numeric strings such as "1e4" as numbers."""
    number = _as_float(value) if isinstance(value, str) else None
    return value if number is None else (int(number) if number.is_integer() and "." not in value else number)


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


def _check(cfg: Config) -> None:
    """Rules that tie keys together, each naming the key at fault."""
    data, task, train, val = cfg.data, cfg.task, cfg.train, cfg.validation
    losses = TASKS[task.type].losses
    rules = [
        (bool(data.sources), "data.sources: give at least one source ({format: ..., path: ...} or {path: manifest.csv})"),
        (task.loss is None or task.loss in losses,
         f"task.loss: a {task.type} task takes {', '.join(losses)}, got {task.loss!r}"),
        (data.split.val + data.split.test < 1.0,
         f"data.split: val + test must be < 1, got {data.split.val + data.split.test:g}"),
        (cfg.augment.noise_snr_db[0] <= cfg.augment.noise_snr_db[1],
         f"augment.noise_snr_db: expected [low, high], got {list(cfg.augment.noise_snr_db)}"),
        (cfg.augment.background_snr_db[0] <= cfg.augment.background_snr_db[1],
         f"augment.background_snr_db: expected [low, high], got {list(cfg.augment.background_snr_db)}"),
        (cfg.augment.background_p == 0 or data.positive is not None,
         "augment.background_p: needs a derived binary task (data.positive), whose negative class is the background"),
        (data.positive is None or task.type == "classification",
         f"data.positive: only a classification task derives a binary task, this one is {task.type}"),
        (task.type != "multilabel" or bool(data.classes),
         "data.classes: a multilabel task needs its output labels, e.g. [crackle, wheeze]"),
        (task.type != "regression" or cfg.augment.balance == "none",
         "augment.balance: must be none for a regression task (there are no classes to balance)"),
        (data.classes is None or len(set(data.classes)) == len(data.classes),
         f"data.classes: repeats a label: {list(data.classes or ())}"),
        (data.positive is None or data.positive != data.negative,
         f"data.negative: must differ from data.positive ({data.positive!r})"),
        (data.positive is None or data.classes is None or data.positive in data.classes,
         f"data.positive: {data.positive!r} is not one of data.classes {list(data.classes or ())}"),
        (not data.auxiliary or (task.type == "classification" and data.classes is not None and data.positive is None),
         "data.auxiliary: needs a classification task with data.classes and no data.positive"),
        (not set(data.auxiliary) & set(data.classes or ()),
         f"data.auxiliary: {sorted(set(data.auxiliary) & set(data.classes or ()))} also in data.classes"),
        (train.ensemble != "folds" or val.strategy == "group_kfold",
         "train.ensemble: 'folds' needs validation.strategy: group_kfold"),
        (train.ensemble == "folds" or train.ensemble >= 1, f"train.ensemble: must be >= 1 or 'folds', got {train.ensemble}"),
        (val.strategy != "group_kfold" or train.ensemble in (1, "folds"),
         "train.ensemble: with group_kfold, use 1 (the best fold's model) or 'folds' (all of them)"),
        (train.device == "auto" or train.device == "cpu" or train.device.startswith("cuda"),
         f"train.device: expected auto, cpu, cuda or cuda:N, got {train.device!r}"),
    ]
    for i, source in enumerate(data.sources):
        rules.append((bool(source.format), f"data.sources[{i}].format: must not be empty"))
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def _unknown(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(k.rsplit('.', 1)[-1] for k in known)})"
    return f"unknown key {key!r}{hint}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, FeatureConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
