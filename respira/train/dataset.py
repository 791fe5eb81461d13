"""The training data: sources -> one table with task labels and splits -> clips decoded once into memory.

`prepare(cfg)` does it all: import every source (an importer or a manifest), drop the subjects
of `exclude_subjects_of`, keep the rows the task can use, assign subject-disjoint splits (a
split the manifest already names is kept; a missing val split is carved out of train; rows of
`auxiliary` labels are training rows of subjects off the val and test sides) and decode every
clip once (unreadable files are skipped and listed in one warning).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from respira import display
from respira.config import Config, DataConfig, SourceConfig
from respira.data import DataWarning, import_dataset, read_manifest, split_by_subject
from respira.data.splits import subject_keys
from respira.errors import AudioError, ConfigError, DataError
from respira.tasks import TASKS

DATASET_COLUMN = "dataset"
"""Column naming the source each row came from (the importer format, or the manifest's file name)."""


@dataclass
class TrainingData:
    """Rows (manifest columns + `split` + `task_label`), their targets [rows, outputs], the output
    names (`classes`, then the training-only `auxiliary` ones), the decoded clips, the task type
    and the unreadable files left out."""

    task: str
    table: pd.DataFrame
    targets: np.ndarray
    classes: tuple[str, ...]
    waves: list[np.ndarray]
    skipped: list[str] = field(default_factory=list)
    auxiliary: tuple[str, ...] = ()

    @property
    def outputs(self) -> tuple[str, ...]:
        """The outputs a model trains: the classes, then the auxiliary labels."""
        return self.classes + self.auxiliary

    def rows(self, split: str) -> np.ndarray:
        """Positional indices of the rows of `split` (train / val / test)."""
        return np.flatnonzero(self.table["split"].to_numpy() == split)

    def auxiliary_rows(self) -> np.ndarray:
        """[rows] bool: the rows of an auxiliary label."""
        return self.table["task_label"].isin(self.auxiliary).to_numpy()

    def without_auxiliary(self) -> TrainingData:
        """The same data without the auxiliary rows and outputs (what the bundle is evaluated on)."""
        keep = ~self.auxiliary_rows()
        return TrainingData(task=self.task, table=self.table.loc[keep].reset_index(drop=True),
                            targets=self.targets[keep][:, :len(self.classes)], classes=self.classes,
                            waves=[w for w, k in zip(self.waves, keep) if k], skipped=self.skipped)

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {output: rows with it, "n": rows}} (regression: only "n")."""
        out: dict[str, dict[str, int]] = {}
        for split in ("train", "val", "test"):
            idx = self.rows(split)
            if not TASKS[self.task].values:
                out[split] = {c: int(self.targets[idx, i].sum()) for i, c in enumerate(self.outputs)} | {"n": len(idx)}
            else:
                out[split] = {"n": len(idx)}
        return out


class ClipSet(torch.utils.data.Dataset):
    """(waveform float32 [samples] at the feature sample rate, target float32 [outputs]) per row of `indices`.

    Clips keep their full length here; the training pipeline crops or pads them. Validation
    scores the clips of `TrainingData.waves` whole, window by window (`loop.score_clips`).
    """

    def __init__(self, data: TrainingData, indices: Sequence[int]) -> None:
        self.data = data
        self.indices = np.asarray(indices, dtype=int)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.indices[i]
        return self.data.waves[row], self.data.targets[row]


def prepare(cfg: Config, *, progress: bool = True) -> TrainingData:
    """Everything `cfg.data` names, labelled for `cfg.task` and split, decoded at the feature sample rate."""
    table = load_sources(cfg.data.sources)
    if cfg.data.exclude_subjects_of is not None:
        table = _exclude_subjects(table, cfg.data.exclude_subjects_of)
    table, classes = select_rows(table, cfg)
    table = assign_splits(table, cfg)
    auxiliary = tuple(cfg.data.auxiliary)
    targets = TASKS[cfg.task.type].targets(table["task_label"], classes + auxiliary)  # before decoding: bad labels fail fast
    waves, ok, skipped = decode(table, sample_rate=cfg.features.sample_rate, progress=progress)
    table, targets = table.loc[ok].reset_index(drop=True), targets[ok]
    waves = [w for w, keep in zip(waves, ok) if keep]
    _check_splits(table, cfg)
    return TrainingData(task=cfg.task.type, table=table, targets=targets, classes=classes, waves=waves,
                        skipped=skipped, auxiliary=auxiliary)


def load_sources(sources: Sequence[SourceConfig]) -> pd.DataFrame:
    """One manifest of every source, with a `dataset` column naming where each row came from."""
    tables = []
    for i, source in enumerate(sources):
        table = load_source(source, key=f"data.sources[{i}]")
        if DATASET_COLUMN not in table.columns:
            table[DATASET_COLUMN] = source.format if source.format != "manifest" else Path(source.path).stem
        if source.label is not None:
            table["label"] = source.label
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def load_source(source: SourceConfig, *, key: str) -> pd.DataFrame:
    """The manifest of one source; a missing path is a ConfigError naming `key`."""
    if not Path(source.path).exists():
        raise ConfigError(f"{key}.path: not found: {source.path}")
    if source.format == "manifest":
        if source.options:
            raise ConfigError(f"{key}.options: a manifest source takes no options")
        return read_manifest(source.path, drop_invalid=True)
    return import_dataset(source.format, source.path, **source.options)


def select_rows(table: pd.DataFrame, cfg: Config) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The rows the task can use, with their task label in column `task_label`, and the output names."""
    data = cfg.data
    column = data.label_column
    if column not in table.columns:
        raise ConfigError(f"data.label_column: no column {column!r} in the data (columns: {', '.join(table.columns)})")
    values = table[column]
    usable = values.notna() & (values.astype(str).str.strip() != "")
    dropped = int((~usable).sum())
    if dropped:
        warnings.warn(f"{dropped} row(s) without a {column} value were left out", DataWarning, stacklevel=2)
    table = table.loc[usable].reset_index(drop=True)
    task = TASKS[cfg.task.type]
    if task.values:
        table["task_label"] = pd.to_numeric(table[column], errors="coerce")
        return table, (column,)
    labels = table[column].map(_label_text)
    if task.independent:
        table["task_label"] = labels
        return table, tuple(data.classes or ())
    present = sorted(set(labels))
    classes = tuple(data.classes) if data.classes is not None else tuple(present)
    for key, wanted in (("data.classes", classes), ("data.auxiliary", data.auxiliary)):
        missing = [c for c in wanted if c not in present]
        if missing:
            raise ConfigError(f"{key}: no rows labelled {', '.join(map(repr, missing))} (labels present: {', '.join(present)})")
    keep = labels.isin(classes + tuple(data.auxiliary)).to_numpy()
    table, labels = table.loc[keep].reset_index(drop=True), labels[keep].reset_index(drop=True)
    if data.positive is not None:
        if data.positive not in classes:
            raise ConfigError(f"data.positive: no rows labelled {data.positive!r} (labels present: {', '.join(present)})")
        table["original_label"] = labels.to_numpy()  # evaluation then reports each original label
        labels = labels.where(labels == data.positive, data.negative)
        classes = (data.negative, data.positive)
    if len(set(labels)) < task.min_classes:
        raise DataError(f"{task.name} needs at least {task.min_classes} classes with rows, "
                        f"found only {sorted(set(labels))}")
    table["task_label"] = labels.to_numpy()
    return table, classes


def subjects_in_split(cfg: Config, split: str) -> set[str]:
    """The subjects that training with `cfg` puts on `split` (train, val or test), found as training
    finds them but without decoding audio (so rows it would find unreadable are still counted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the importers' notes on the training data
        table, _ = select_rows(load_sources(cfg.data.sources), cfg)
        table = assign_splits(table, cfg)
    return set(table.loc[table["split"] == split, "subject"].astype(str))


def assign_splits(table: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Subject-disjoint train / val / test in column `split`; splits the manifest names are kept.

    Rows without a split get one (fractions data.split.val / test, stratified by source and
    label so that each source is spread over every side); when no row is in val
    afterwards, val is carved out of train by subject (fraction data.split.val of train).
    Rows of data.auxiliary labels take no part in that: each joins its subject's side (train
    when the subject has no other rows) and is kept only in train.
    """
    auxiliary = table["task_label"].isin(cfg.data.auxiliary).to_numpy()
    if not auxiliary.any():
        return _split_main(table, cfg)
    main = _split_main(table.loc[~auxiliary], cfg)
    extra = table.loc[auxiliary]
    sides = dict(zip(subject_keys(main), main["split"]))
    named = extra["split"].fillna("").astype(str).str.strip()
    extra = extra.assign(split=[n or sides.get(k, "train") for n, k in zip(named, subject_keys(extra))])
    return pd.concat([main, extra.loc[extra["split"] == "train"]], ignore_index=True)


def _split_main(table: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    split = cfg.data.split
    strata = table[DATASET_COLUMN].astype(str)  # every source spread over every side
    if not TASKS[cfg.task.type].values:
        strata += "|" + table["task_label"].astype(str)
    table = table.assign(_strata=strata)
    out = split_by_subject(table, val=split.val, test=split.test, seed=split.seed, stratify="_strata",
                           method=split.method)
    if split.val > 0 and not (out["split"] == "val").any():
        train = out["split"] == "train"
        carved = split_by_subject(out.loc[train], val=split.val, test=0.0, seed=split.seed,
                                  stratify="_strata", overwrite=True)
        out.loc[train, "split"] = carved["split"].to_numpy()
    return out.drop(columns="_strata")


def decode(table: pd.DataFrame, *, sample_rate: int, progress: bool = True) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Each row's clip (its start..end, or the whole file) as float32 mono at `sample_rate`.

    Returns (waves [rows], readable mask [rows], "path: reason" of each unreadable row).
    Unreadable rows get an empty array and are listed in one DataWarning; decoding never aborts.
    """
    from concurrent.futures import ThreadPoolExecutor

    from respira import audio

    def one(row: tuple) -> np.ndarray | str:
        path, start, end = row
        try:
            y = audio.load(path, sample_rate=sample_rate, start_s=_time(start), end_s=_time(end))
        except AudioError as e:
            return str(e)
        return y if len(y) else f"{path}: no samples"

    rows = list(zip(table["path"], table["start"], table["end"]))
    results: list[np.ndarray | str] = []
    bar = display.progress(len(rows), description="decoding", enabled=progress)
    with bar as advance, ThreadPoolExecutor(max_workers=4) as pool:
        for result in pool.map(one, rows):
            results.append(result)
            advance()
    ok = np.array([not isinstance(r, str) for r in results], dtype=bool)
    skipped = [r for r in results if isinstance(r, str)]
    if skipped:
        shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        warnings.warn(f"skipped {len(skipped)} unreadable clip(s): {shown}", DataWarning, stacklevel=2)
    waves = [r if isinstance(r, np.ndarray) else np.zeros(0, np.float32) for r in results]
    return waves, ok, skipped


def _exclude_subjects(table: pd.DataFrame, source: SourceConfig) -> pd.DataFrame:
    banned = set(subject_keys(load_source(source, key="data.exclude_subjects_of")))
    keep = ~np.isin(subject_keys(table), list(banned))
    if not keep.any():
        raise DataError("data.exclude_subjects_of: every row belongs to an excluded subject")
    return table.loc[keep].reset_index(drop=True)


def _check_splits(table: pd.DataFrame, cfg: Config) -> None:
    needed = ["train"] + (["val"] if cfg.validation.strategy == "holdout" else [])
    for split in needed:
        if not (table["split"] == split).any():
            raise DataError(f"no readable clips in the {split} split ({len(table)} rows in all); "
                            "add data or change data.split")


def _label_text(value: object) -> str:
    return str(value).strip()


def _time(value: float) -> float | None:
    return None if pd.isna(value) else float(value)


def data_summary(data: TrainingData, cfg: DataConfig) -> dict:
    """Provenance of the data: sources, rows per split and class, skipped files."""
    return {
        "sources": [{"format": s.format, "path": s.path, **({"label": s.label} if s.label else {})} for s in cfg.sources],
        "excluded_subjects_of": cfg.exclude_subjects_of.path if cfg.exclude_subjects_of else None,
        "counts": data.counts(),
        "skipped": data.skipped,
    }
