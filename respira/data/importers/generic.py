"""Importers for a user's own data: a folder per class, or a CSV listing files and labels."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from respira.data.importers.registry import list_audio, register, warn
from respira.data.labels import map_label
from respira.data.manifest import from_records
from respira.errors import DataError


@register("folder")
def import_folder(src: Path, *, subject_regex: str | None = None) -> pd.DataFrame:
    """`SRC/{class}/**/*.{audio}` -> one row per file; label = class folder name (normalised).

    subject = file stem, or the first group (else the whole match) of `subject_regex` searched
    in the file name, e.g. `^([^_]+)_` for `{speaker}_{take}.wav`.
    """
    if not src.is_dir():
        raise DataError(f"folder: expected a folder of class folders ({src}/{{class}}/*.wav), got {src}")
    pattern = _compile(subject_regex)
    records, loose, unmatched = [], [], []
    for path in list_audio(src):
        parts = path.relative_to(src).parts
        if len(parts) < 2:
            loose.append(path.name)
            continue
        subject = path.stem
        if pattern is not None:
            m = pattern.search(path.name)
            if m is None:
                unmatched.append(path.name)
            else:
                subject = m.group(1) if m.re.groups else m.group(0)
        label = parts[0]
        records.append({"path": str(path), "label": map_label(label, {}), "subject": subject, "source_label": label})
    if loose:
        warn(f"folder: skipped {len(loose)} audio file(s) directly in {src} (no class folder), e.g. {loose[0]}")
    if unmatched:
        n = len(unmatched)
        warn(f"folder: --subject-regex did not match {n} file name(s), e.g. {unmatched[0]}; used the file stem")
    if not records:
        raise DataError(f"folder: no audio files in class folders under {src} (expected {src}/{{class}}/*.wav)")
    return from_records(records)


@register("csv")
def import_csv(src: Path) -> pd.DataFrame:
    """A CSV with `filename,label` (or `path,label`) and optional `subject,start,end,split` and
    metadata columns, kept as they are; file names are relative to the CSV's folder.
    Rows whose file is missing are skipped with one warning; subject defaults to the file stem."""
    if not src.is_file():
        raise DataError(f"csv: expected a CSV file listing filename,label; got {src}")
    try:
        table = pd.read_csv(src, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"csv: cannot read {src}: {str(e).splitlines()[0]}") from None
    name_col = next((c for c in ("filename", "path") if c in table.columns), None)
    if name_col is None or "label" not in table.columns:
        raise DataError(f"csv: {src} needs columns filename (or path) and label; it has {', '.join(table.columns)}")
    table = table.rename(columns={name_col: "path"})
    folder = src.resolve().parent
    table["path"] = [str(folder / p) for p in table["path"]]
    exists = table["path"].map(lambda p: Path(p).is_file())
    if not exists.all():
        missing = table.loc[~exists, "path"]
        warn(f"csv: skipped {len(missing)} row(s) of {src} whose file is missing, e.g. {missing.iloc[0]}")
        table = table.loc[exists]
    if table.empty:
        raise DataError(f"csv: no rows of {src} name an existing file")
    if "source_label" not in table.columns:
        table["source_label"] = table["label"]
    table["label"] = [map_label(v, {}) for v in table["label"]]
    if "subject" not in table.columns:
        table["subject"] = [Path(p).stem for p in table["path"]]
    return from_records(table.to_dict("records"))


def _compile(regex: str | None) -> re.Pattern | None:
    if regex is None:
        return None
    try:
        return re.compile(regex)
    except re.error as e:
        raise DataError(f"folder: invalid --subject-regex {regex!r}: {e}") from None
