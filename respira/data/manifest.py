"""Manifests: the data contract between importers and training / evaluation.

A manifest is a DataFrame with one row per clip or per event, stored as CSV or JSONL. Its
required columns come first, in the order of `MANIFEST_COLUMNS`; any metadata columns
(`sex`, `age`, `source`, `fold`, ...) follow. `start` / `end` are seconds, both empty for a
whole file. `subject` is what a split must never cut across (speaker, patient, call).
Rows are named "row N", N counting data rows from 1.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from respira.errors import AudioError, DataError

MANIFEST_COLUMNS: tuple[str, ...] = ("path", "label", "start", "end", "subject", "split", "source_label")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_TEXT_COLUMNS = ("path", "label", "subject", "split", "source_label")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_MAX_LISTED = 10  # rows named in one message
_END_SLACK_S = 0.05  # an event may end this far past its file's decoded end before it is warned about


class DataWarning(UserWarning):
    """Something in a data set or manifest that was skipped or looks wrong; the message names it."""


def from_records(records: Iterable[Mapping[str, object]]) -> pd.DataFrame:
    """A manifest from row dicts: missing required columns filled (times NaN, text ""), required columns first."""
    df = pd.DataFrame.from_records(list(records))
    return _conform(df)


def read_manifest(path: str | os.PathLike, *, drop_invalid: bool = False, keep_invalid: bool = False) -> pd.DataFrame:
    """Read a CSV / JSONL manifest; relative `path` values become absolute (against the manifest's folder).

    Rows with a bad interval (start >= end, negative, only one of the two set) raise DataError
    unless `drop_invalid` (warn naming them, then drop) or `keep_invalid` (keep them, e.g. to count them).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown manifest file type {path.suffix!r} (expected .csv or .jsonl)")
    try:
        if kind == "csv":
            df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
        else:
            df = pd.read_json(path, lines=True, dtype=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty manifest (no rows)") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a readable {kind.upper()} manifest: {str(e).splitlines()[0]}") from None
    _check_structure(df, where=str(path))
    df = _conform(df, where=str(path))
    folder = Path(os.path.abspath(path.parent))
    df["path"] = [str(folder / p) if p and not os.path.isabs(p) else p for p in df["path"]]
    bad = invalid_intervals(df)
    if bad.any() and not keep_invalid:
        rows = _row_list(np.flatnonzero(bad))
        if not drop_invalid:
            raise DataError(f"{path}: invalid start/end in {rows} (start must be >= 0 and < end, or both empty)")
        message = f"{path}: dropped {int(bad.sum())} row(s) with invalid start/end: {rows}"
        warnings.warn(message, DataWarning, stacklevel=2)
        df = df.loc[~bad].reset_index(drop=True)
    return df


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write `df` as CSV or JSONL (by extension), required columns first; paths inside the
    manifest's folder are written relative to it, others absolute."""
    path = Path(path)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown manifest file type {path.suffix!r} (expected .csv or .jsonl)")
    _check_structure(df, where="manifest to write")
    out = _conform(df)
    folder = Path(os.path.abspath(path.parent))
    out["path"] = [_relative_if_inside(p, folder) for p in out["path"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        out.to_csv(path, index=False)
    else:
        rows = out.astype(object).where(out.notna(), None).to_dict("records")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False, default=_json_scalar) + "\n" for r in rows)


def invalid_intervals(df: pd.DataFrame) -> np.ndarray:
    """Bool mask [rows]: `start`/`end` not both empty and not 0 <= start < end."""
    start = pd.to_numeric(df["start"], errors="coerce").to_numpy(dtype=float)
    end = pd.to_numeric(df["end"], errors="coerce").to_numpy(dtype=float)
    whole = np.isnan(start) & np.isnan(end)
    with np.errstate(invalid="ignore"):
        ok = (start >= 0) & (end > start)
    return ~(whole | ok)


def validate(df: pd.DataFrame, *, check_files: bool = False) -> list[str]:
    """Problems that do not stop use, one string per row ("row 12: file not found: ..."); a missing
    required column or an empty manifest raises DataError. `check_files` also stats every file."""
    _check_structure(df, where="manifest")
    out: list[str] = []
    starts = pd.to_numeric(df["start"], errors="coerce").to_numpy(dtype=float)
    ends = pd.to_numeric(df["end"], errors="coerce").to_numpy(dtype=float)
    bad = invalid_intervals(df)
    exists: dict[str, bool] = {}
    for i, row in enumerate(df[list(_TEXT_COLUMNS)].itertuples(index=False)):
        path, label, subject, split = (_text(v) for v in (row.path, row.label, row.subject, row.split))
        name = f"row {i + 1}"
        if not path:
            out.append(f"{name}: empty path")
        if not label:
            out.append(f"{name}: empty label")
        if not subject:
            out.append(f"{name}: empty subject (splits treat the file as its own subject)")
        if split and split not in SPLITS:
            out.append(f"{name}: unknown split {split!r} (expected one of {', '.join(SPLITS)} or empty)")
        if bad[i]:
            out.append(f"{name}: {_interval_problem(starts[i], ends[i])}")
        if check_files and path:
            if path not in exists:
                exists[path] = os.path.isfile(path)
            if not exists[path]:
                out.append(f"{name}: file not found: {path}")
    return out


def summarize(df: pd.DataFrame, *, check_audio: bool = True, decode: bool = True, progress: bool = False) -> dict:
    """Counts and totals of a manifest, JSON-ready.

    Keys: rows, labels {label: n}, splits {split: n} ("unassigned" for empty), subjects (unique),
    duration_s (event rows: end - start; whole-file rows: decoded header duration; None when
    whole-file rows exist and `check_audio` is off), unreadable [paths], errors {path: reason},
    warnings {path: [..]} (decoder notes, events past the end of their file), invalid (rows
    with a bad interval). `check_audio` reads every distinct file once: all of it when `decode`
    (a damaged file counts with what decodes and a "damaged: ..." warning; silence and clipping
    are warned of), else its header only (which shows an unfinalised or cut WAV, not a cut FLAC).
    """
    _check_structure(df, where="manifest")
    bad = invalid_intervals(df)
    paths = [_text(p) for p in df["path"]]
    labels = Counter(_text(v) for v in df["label"])
    splits = Counter(_text(v) or "unassigned" for v in df["split"])
    subjects = {_text(s) or p for s, p in zip(df["subject"], paths)}
    start = pd.to_numeric(df["start"], errors="coerce").to_numpy(dtype=float)
    end = pd.to_numeric(df["end"], errors="coerce").to_numpy(dtype=float)
    event = ~np.isnan(start) & ~np.isnan(end) & ~bad
    whole = np.isnan(start) & np.isnan(end)
    summary: dict = {
        "rows": len(df),
        "labels": dict(sorted(labels.items())),
        "splits": dict(sorted(splits.items(), key=lambda kv: (_split_rank(kv[0]), kv[0]))),
        "subjects": len(subjects),
        "duration_s": None,
        "unreadable": [],
        "errors": {},
        "warnings": {},
        "invalid": int(bad.sum()),
    }
    event_total = float(np.sum(end[event] - start[event]))
    if not check_audio:
        summary["duration_s"] = None if whole.any() else round(event_total, 3)
        return summary
    durations = _read_files(sorted({p for p in paths if p}), summary, decode=decode, progress=progress)
    whole_total = sum(durations.get(p, 0.0) for p, w in zip(paths, whole) if w)
    for i in np.flatnonzero(event):
        d = durations.get(paths[i])
        if d is not None and end[i] > d + _END_SLACK_S:
            summary["warnings"].setdefault(paths[i], []).append(
                f"row {i + 1}: event end {end[i]:g} s is past the end of the file ({d:.3f} s)"
            )
    summary["duration_s"] = round(event_total + whole_total, 3)
    return summary


def _read_files(paths: list[str], summary: dict, *, decode: bool, progress: bool) -> dict[str, float]:
    """Duration (s) of each readable file; fills summary's unreadable / errors / warnings."""
    from respira import audio  # the decoder is only needed when summaries check audio

    durations: dict[str, float] = {}
    for p in _progress(paths, enabled=progress, what="decoding" if decode else "reading headers"):
        try:
            info = audio.info(p, check=decode)
        except AudioError as e:
            summary["unreadable"].append(p)
            summary["errors"][p] = str(e)
            continue
        durations[p] = float(info.duration_s)
        if info.warnings:
            summary["warnings"].setdefault(p, []).extend(info.warnings)
    return durations


def _progress(items: list[str], *, enabled: bool, what: str) -> Iterable[str]:
    if not enabled:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=what, console=Console(stderr=True), transient=True)


def _check_structure(df: pd.DataFrame, *, where: str) -> None:
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{where}: missing required column(s) {', '.join(missing)} (required: {', '.join(MANIFEST_COLUMNS)})"
        )
    if len(df) == 0:
        raise DataError(f"{where}: empty manifest (no rows)")


def _conform(df: pd.DataFrame, *, where: str = "manifest") -> pd.DataFrame:
    """Required columns first with their types (text "" for missing, times float), then the rest."""
    df = df.copy()
    for c in MANIFEST_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan if c in ("start", "end") else ""
    for c in _TEXT_COLUMNS:
        df[c] = [_text(v) for v in df[c]]
    for c in ("start", "end"):
        values = pd.to_numeric(df[c], errors="coerce")
        given = df[c].notna() & (df[c].astype(str).str.strip() != "")
        if (given & values.isna()).any():
            i = int(np.flatnonzero(given & values.isna())[0])
            raise DataError(f"{where}: row {i + 1}: {c} {df[c].iloc[i]!r} is not a number of seconds")
        df[c] = values.astype(float)
    rest = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    return df[list(MANIFEST_COLUMNS) + rest].reset_index(drop=True)


def _json_scalar(value: object) -> object:
    return value.item() if hasattr(value, "item") else str(value)


def _split_rank(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _text(value: object) -> str:
    """A cell as stripped text; missing (None, NaN, NA) -> ""."""
    if isinstance(value, str):
        return value.strip()
    return "" if value is None or pd.isna(value) else str(value).strip()


def _interval_problem(start: float, end: float) -> str:
    if math.isnan(start) or math.isnan(end):
        return f"start {start:g} / end {end:g}: give both or neither"
    if start < 0 or end < 0:
        return f"negative time (start {start:g}, end {end:g})"
    return f"end {end:g} <= start {start:g}"


def _row_list(indices: np.ndarray) -> str:
    names = ", ".join(str(i + 1) for i in indices[:_MAX_LISTED])
    more = f" and {len(indices) - _MAX_LISTED} more" if len(indices) > _MAX_LISTED else ""
    return f"row{'s' if len(indices) > 1 else ''} {names}{more}"


def _relative_if_inside(p: str, folder: Path) -> str:
    if not p:
        return p
    absolute = Path(os.path.abspath(p))
    return absolute.relative_to(folder).as_posix() if absolute.is_relative_to(folder) else str(absolute)

