"""The training configuration: one frozen dataclass per component, read from one YAML file.

``load_config(path, overrides)`` reads YAML, applies ``a.b=value`` overrides (values parsed as
YAML), checks every key, type and range (ConfigError naming the full key, e.g.
``unknown key 'train.lrr' (did you mean 'train.lr'?)``) and resolves relative paths against
the current directory, all with the machinery of `respira.settings`; each section checks its
ranges on construction too. ``save_config`` writes the resolved config back as YAML.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from respira.errors import ConfigError
from respira.features import FeatureConfig
from respira.settings import Bounded, as_float, bounded, build, check_keys, path_field, read_settings
from respira.tasks import POOLINGS, TASK_NAMES, TASKS


@dataclass(frozen=True)
class SourceConfig:
    """One data source: an importer (`format` + `path` + importer `options`) or a manifest file
    (format "manifest"). `label`, when set, relabels every row of this source (e.g. all clips of
    a cough data set -> "cough"; the data set's own label stays in `source_label`)."""

    path: str = path_field()
    format: str = "manifest"
    options: dict = field(default_factory=dict)
    label: Union[str, None] = None


@dataclass(frozen=True)
class SplitConfig(Bounded, key="data.split"):
    """Subject-disjoint split fractions; rows whose manifest already names a split keep it.
    method "stratified" balances labels and sources over the sides; "hash" puts each subject
    on a side fixed by (seed, subject) alone, the same in every config that shares the subject."""

    val: float = bounded(0.15, ge=0.0, le=0.9)
    test: float = bounded(0.15, ge=0.0, le=0.9)
    seed: int = 0
    method: Literal["stratified", "hash"] = "stratified"


@dataclass(frozen=True)
class DataConfig(Bounded, key="data"):
    """Which clips, which labels, how long a training example is.

    classes: for classification, keep only rows with these labels, in this order (None = all,
    sorted); for multilabel, the output labels (a row's label names the present ones, joined
    by "+", "both" = all of them, anything else = none). positive: derive a binary task,
    `positive` vs every other label (named `negative`). label_column: the column holding the
    label (for regression, the numeric target). exclude_subjects_of: a source whose subjects
    are dropped before splitting (never trained on, e.g. the calls a detector is tested on).
    clip_s: the model's window in seconds; longer clips are scored window by window at inference and
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
    clip_s: float = bounded(4.0, gt=0.0, le=600.0)
    pooling: Literal[POOLINGS] = "mean"
    split: SplitConfig = SplitConfig()


@dataclass(frozen=True)
class ModelConfig:
    """A `respira.models` registry name, its extra keyword parameters, optional pretrained weights."""

    name: str = "compact_cnn"
    params: dict = field(default_factory=dict)
    pretrained: Union[str, None] = path_field(None)


@dataclass(frozen=True)
class AugmentConfig(Bounded, key="augment"):
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
    "sampler" (class-balanced sampling), "loss" (class-weighted loss) or "none". pad: what fills
    the rest of the window around a clip shorter than it in training: "zeros" (digital silence,
    as at inference), "noise" (white noise) or "background" (a stretch of an eventless clip of the
    batch; needs a derived binary task), both at the clip's own floor level +-6 dB.
    """

    shift: bool = True
    crop: Literal["random", "loudest"] = "random"
    gain_db: float = bounded(6.0, ge=0.0, le=40.0)
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    noise_p: float = bounded(0.5, ge=0.0, le=1.0)
    pitch_shift: float = bounded(0.0, ge=0.0, le=12.0)
    time_stretch: float = bounded(0.0, ge=0.0, le=0.5)
    spec_time_masks: int = bounded(2, ge=0)
    spec_time_width: float = bounded(0.1, ge=0.0, le=1.0)
    spec_freq_masks: int = bounded(2, ge=0)
    spec_freq_width: int = bounded(8, ge=0)
    mixup_alpha: float = bounded(0.4, ge=0.0)
    mixup_p: float = bounded(0.5, ge=0.0, le=1.0)
    mixup_on: Literal["waveform", "features"] = "features"
    background_p: float = bounded(0.0, ge=0.0, le=1.0)
    background_snr_db: tuple[float, float] = (0.0, 20.0)
    balance: Literal["sampler", "loss", "none"] = "sampler"
    pad: Literal["zeros", "noise", "background"] = "zeros"


@dataclass(frozen=True)
class TrainConfig(Bounded, key="train"):
    """The optimisation: AdamW, linear warm-up then cosine decay per step, early stopping.

    batch_size is the global batch (split across processes under torchrun). grad_clip 0 = off.
    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". amp: mixed precision, on
    CUDA only. early_stop_metric: a validation metric ("auto" = balanced_accuracy /
    macro_f1 / mae by task; "loss" = validation loss). ensemble: train N models with seeds
    seed..seed+N-1 and ship them together, or "folds" (with group_kfold) to ship every fold's model.
    """

    epochs: int = bounded(40, ge=1)
    batch_size: int = bounded(32, ge=1)
    lr: float = bounded(1e-3, gt=0.0)
    weight_decay: float = bounded(1e-2, ge=0.0)
    warmup_epochs: float = bounded(2.0, ge=0.0)
    grad_clip: float = bounded(5.0, ge=0.0)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    early_stop_metric: str = "auto"
    patience: int = bounded(10, ge=1)
    ensemble: Union[int, Literal["folds"]] = 1


@dataclass(frozen=True)
class TaskConfig(Bounded, key="task"):
    """What the model predicts: a task type of `respira.tasks` ("classification", "multilabel",
    "regression") and its loss, one of the task's losses (None: its default)."""

    type: Literal[TASK_NAMES] = "classification"
    loss: Union[str, None] = None
    label_smoothing: float = bounded(0.0, ge=0.0, le=0.5)


@dataclass(frozen=True)
class ValidationConfig(Bounded, key="validation"):
    """"holdout" (one validation split) or "group_kfold" (one model per subject-disjoint fold of
    the non-test data; mean +- std of the validation metrics in cv.json)."""

    strategy: Literal["holdout", "group_kfold"] = "holdout"
    folds: int = bounded(5, ge=2)


@dataclass(frozen=True)
class Config:
    """Everything one training run needs."""

    data: DataConfig = DataConfig()
    features: Annotated[FeatureConfig, _features] = FeatureConfig()
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
    return config_from_dict(read_settings(path, overrides, sections=[f.name for f in dataclasses.fields(Config)]))


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """A checked Config from plain values (as YAML gives them); relative paths become absolute."""
    cfg = build(Config, _renamed(raw), prefix="")
    _check(cfg)
    return cfg


_RENAMED_OPTIONS = {"ignore_around": "ignore_around_s"}
"""Importer options of configs written before seconds ended in _s (old names -> new)."""


def _renamed(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """`raw` with the keys of configs written before seconds ended in _s (data.clip_seconds, the
    ignore_around importer option) under their names, so that older bundles' provenance still loads."""
    data = raw.get("data")
    if not isinstance(data, Mapping):
        return raw
    data = {("clip_s" if k == "clip_seconds" else k): v for k, v in data.items()}
    if isinstance(data.get("sources"), list):
        data["sources"] = [
            {**src, "options": {_RENAMED_OPTIONS.get(k, k): v for k, v in src["options"].items()}}
            if isinstance(src, Mapping) and isinstance(src.get("options"), Mapping) else src
            for src in data["sources"]
        ]
    return {**raw, "data": data}


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write `cfg` (resolved: absolute paths, every default filled in) as YAML."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


# --- building and checking ------------------------------------------------------------------


def _features(raw: Any, key: str) -> FeatureConfig:
    """The features section: FeatureConfig checks its own values (numeric strings such as "1e4" as numbers)."""
    raw = check_keys(FeatureConfig, raw, prefix=key)
    try:
        return FeatureConfig.from_dict({k: _feature_value(v) for k, v in raw.items()})
    except ConfigError as e:  # "feature config: n_mels must be ..." -> "features.n_mels must be ..."
        raise ConfigError(f"{key}.{str(e).removeprefix('feature config: ')}") from None


def _feature_value(value: Any) -> Any:
    """Feature values from YAML: numeric strings such as "1e4" as numbers."""
    number = as_float(value) if isinstance(value, str) else None
    return value if number is None else (int(number) if number.is_integer() and "." not in value else number)


def _check(cfg: Config) -> None:
    """Rules that tie keys together, each naming the key at fault."""
    data, task, train, val = cfg.data, cfg.task, cfg.train, cfg.validation
    kind = TASKS[task.type]
    losses = kind.losses
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
        (data.positive is None or kind.exclusive,
         f"data.positive: only a classification task derives a binary task, this one is {task.type}"),
        (not kind.independent or bool(data.classes),
         f"data.classes: a {task.type} task needs its output labels, e.g. [crackle, wheeze]"),
        (not kind.values or cfg.augment.balance == "none",
         f"augment.balance: must be none for a {task.type} task (there are no classes to balance)"),
        (data.classes is None or len(set(data.classes)) == len(data.classes),
         f"data.classes: repeats a label: {list(data.classes or ())}"),
        (data.positive is None or data.positive != data.negative,
         f"data.negative: must differ from data.positive ({data.positive!r})"),
        (data.positive is None or data.classes is None or data.positive in data.classes,
         f"data.positive: {data.positive!r} is not one of data.classes {list(data.classes or ())}"),
        (not data.auxiliary or (kind.exclusive and data.classes is not None and data.positive is None),
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
        rules.append(_importer_problem(source, f"data.sources[{i}]"))
    for ok, message in rules:
        if not ok:
            raise ConfigError(message)


def _importer_problem(source: SourceConfig, key: str) -> tuple[bool, str]:
    """(whether the importer of `source` takes its format and options, the error naming `key`)."""
    from respira.data.importers import importer_options
    from respira.errors import DataError

    if source.format in ("manifest", ""):
        return True, ""
    try:
        importer_options(source.format, source.options)
    except DataError as e:
        return False, f"{key}: {e}"
    return True, ""


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
