"""Importer for lung-sound recordings annotated per respiratory cycle: ICBHI 2017."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from respira.data.importers.registry import find_file, list_audio, register, warn
from respira.data.manifest import from_records
from respira.errors import DataError

#: (crackles, wheezes) of a respiratory cycle -> shared label.
ICBHI_LABELS = {(0, 0): "normal", (1, 0): "crackle", (0, 1): "wheeze", (1, 1): "both"}

_ICBHI_NAME = re.compile(r"^(?P<patient>\d+)_(?P<rec>[^_]+)_(?P<location>[^_]+)_(?P<mode>[^_]+)_(?P<device>[^_]+)$")
# Official challenge names first, then those of the Kaggle "Respiratory Sound Database" copy.
_SPLIT_FILES = ("ICBHI_challenge_train_test.txt",)
_DIAGNOSIS_FILES = ("ICBHI_Challenge_diagnosis.txt", "patient_diagnosis.csv")
_DEMOGRAPHIC_FILES = ("ICBHI_Challenge_demographic_information.txt", "demographic_info.txt")
_DEMOGRAPHIC_COLUMNS = ("patient", "age", "sex", "bmi", "child_weight", "child_height")


@register("icbhi")
def import_icbhi(src: Path) -> pd.DataFrame:
    """ICBHI 2017: `{patient}_{rec}_{location}_{mode}_{device}.wav` each with a `.txt` of lines
    `{start}\\t{end}\\t{crackles 0|1}\\t{wheezes 0|1}` -> one event row per respiratory cycle,
    label normal / crackle / wheeze / both; subject = patient.

    From SRC or up to 3 folders above it when present (names in any case): split from
    `ICBHI_challenge_train_test.txt` (the official 60/40 train/test), diagnosis from
    `ICBHI_Challenge_diagnosis.txt`, age / sex / bmi / child_weight / child_height from
    `ICBHI_Challenge_demographic_information.txt` (NA = missing); the Kaggle copy's
    `patient_diagnosis.csv` and `demographic_info.txt` work too.
    Columns: recording, cycle, location, mode, device, crackles, wheezes, diagnosis, demographics.
    """
    folders = (src, *src.resolve().parents[:3])  # the Kaggle copy keeps them 1-2 levels above the audio
    found = {names: find_file(names, *folders) for names in (_SPLIT_FILES, _DIAGNOSIS_FILES, _DEMOGRAPHIC_FILES)}
    if missing := [" / ".join(names) for names, path in found.items() if path is None]:
        warn(f"icbhi: {'; '.join(missing)} not found in {src} or its parents; those columns stay empty")
    splits = _icbhi_splits(found[_SPLIT_FILES])
    diagnosis = _icbhi_diagnosis(found[_DIAGNOSIS_FILES])
    people = _icbhi_demographics(found[_DEMOGRAPHIC_FILES])
    records, unannotated = [], []
    for wav in list_audio(src):
        m = _ICBHI_NAME.match(wav.stem)
        if m is None:
            continue
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            unannotated.append(wav.name)
            continue
        patient = m["patient"]
        for i, (start, end, crackles, wheezes) in enumerate(_icbhi_cycles(txt)):
            records.append({
                "path": str(wav),
                "label": ICBHI_LABELS[(crackles, wheezes)],
                "start": start,
                "end": end,
                "subject": patient,
                "split": splits.get(wav.stem, ""),
                "source_label": f"crackles={crackles},wheezes={wheezes}",
                "recording": wav.stem,
                "cycle": i,
                "location": m["location"],
                "mode": m["mode"],
                "device": m["device"],
                "crackles": crackles,
                "wheezes": wheezes,
                "diagnosis": diagnosis.get(patient, ""),
                **people.get(patient, {}),
            })  # fmt: skip
    if splits and (unsplit := sorted({r["recording"] for r in records if not r["split"]})):
        warn(f"icbhi: {len(unsplit)} recording(s) not in the split file, split left empty, e.g. {unsplit[0]}")
    if unannotated:
        n = len(unannotated)
        warn(f"icbhi: skipped {n} recording(s) without a .txt annotation beside them, e.g. {unannotated[0]}")
    if not records:
        layout = "{patient}_{rec}_{location}_{mode}_{device}.wav + .txt"
        raise DataError(f"icbhi: no annotated recordings {layout} under {src}")
    return from_records(records)


def _icbhi_cycles(txt: Path) -> list[tuple[float, float, int, int]]:
    cycles = []
    for n, line in enumerate(txt.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            start, end, crackles, wheezes = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
        except (ValueError, IndexError):
            got = line.strip()
            raise DataError(f"icbhi: {txt} line {n}: expected start end crackles wheezes, got {got!r}") from None
        if (crackles, wheezes) not in ICBHI_LABELS:
            raise DataError(f"icbhi: {txt} line {n}: crackles / wheezes must be 0 or 1, got {crackles} {wheezes}")
        if not 0 <= start < end:
            warn(f"icbhi: {txt.name} line {n}: cycle end {end:g} <= start {start:g}; skipped")
            continue
        cycles.append((start, end, crackles, wheezes))
    return cycles


def _icbhi_table(path: Path, names: tuple[str, ...]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, sep=r"[\t,; ]+", engine="python", header=None, names=list(names),
                           dtype=str, na_values=["NA"], keep_default_na=False)  # fmt: skip
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"icbhi: cannot read {path}: {str(e).splitlines()[0]}") from None


def _icbhi_splits(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    table = _icbhi_table(path, ("recording", "split"))
    return {r: s.strip().lower() for r, s in zip(table["recording"], table["split"]) if isinstance(s, str)}


def _icbhi_diagnosis(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    table = _icbhi_table(path, ("patient", "diagnosis"))
    return {p: d.strip() for p, d in zip(table["patient"], table["diagnosis"]) if isinstance(d, str)}


def _icbhi_demographics(path: Path | None) -> dict[str, dict]:
    if path is None:
        return {}
    table = _icbhi_table(path, _DEMOGRAPHIC_COLUMNS)
    for c in ("age", "bmi", "child_weight", "child_height"):
        table[c] = pd.to_numeric(table[c], errors="coerce")
    table["sex"] = table["sex"].map({"F": "female", "M": "male"})
    return {r["patient"]: {k: v for k, v in r.items() if k != "patient"} for r in table.to_dict("records")}
