"""Importers for COVID-19 / respiratory-health cough sets: covid19-cough (clips and whole calls),
COUGHVID, Coswara, Virufy. Their labels are subject status (covid19, negative, healthy, ...);
the kind of sound (cough, breathing, ...) is in the `sound` column."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from respira import display
from respira.data.importers.registry import audio_index, expect_file, find_file, keep_existing, register, warn
from respira.data.labels import map_label
from respira.data.manifest import from_records
from respira.errors import AudioError, DataError

COUGHVID_LABELS = {"covid_19": "covid19", "": "unknown"}
COSWARA_LABELS = {
    "positive_mild": "covid19", "positive_moderate": "covid19", "positive_asymp": "covid19",
    "under_validation": "unknown",  # test result pending
}  # fmt: skip
COSWARA_RECORDINGS = (
    "breathing-deep", "breathing-shallow", "cough-heavy", "cough-shallow",
    "counting-fast", "counting-normal", "vowel-a", "vowel-e", "vowel-o",
)  # fmt: skip
VIRUFY_LABELS = {
    "positive": "covid19", "pos": "covid19", "true": "covid19", "1": "covid19",
    "neg": "negative", "false": "negative", "0": "negative",
}  # fmt: skip
_COUGHVID_KEEP = ("cough_detected", "age", "sex", "respiratory_condition", "fever_muscle_pain", "status_SSL")
_EXPERT_COLUMN = re.compile(r"_\d$")  # quality_1 ... severity_4: one set per expert
_SEGMENT = re.compile(r"^(.*)-(\d+)$")
CALL_SIDES = ("caller", "operator")  # covid19-cough-uncut: the folders a call's two channels go to
_FRAME_S = 0.01  # caller_channel: frame length, s
SIDES_RULE = "summed rise above the 90th percentile, 10-ms frames"
"""How caller_channel chooses; side files made under another rule (DIR/sides-rule.txt) are made again."""
SIDES_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "respira" / "covid19-cough-uncut-sides"
"""Where benchmarks keep the calls' sides between runs."""
_POWER_FLOOR = 1e-10  # caller_channel: -100 dB, so digital silence has a finite level
_VIRUFY_FILE_COLUMNS = ("cough_filename", "filename", "file", "path")
_VIRUFY_LABEL_COLUMNS = ("corona_test", "pcr_test_result", "covid19", "covid_status", "label")


def _covid19_metadata(src: Path, fmt: str) -> list[dict]:
    path = expect_file(src / "metadata.json", fmt, "metadata")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{fmt}: cannot read {path}: {e}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "filename" in e for e in entries):
        raise DataError(f"{fmt}: {path} should be a list of {{\"filename\", \"covid19\", \"source\", ...}}")
    return entries


def _covid19_label(covid19: object) -> str:
    return "covid19" if covid19 is True else "negative" if covid19 is False else "unknown"


def _covid19_columns(entry: dict) -> dict:
    return {k: entry.get(k) for k in ("source", "verified", "asymptomatic", "kind", "comment")} | {"sound": "cough"}


@register("covid19-cough")
def import_covid19_cough(src: Path) -> pd.DataFrame:
    """covid19-cough clips: `raw/{uuid}.mp3` and `metadata.json` (list of {"filename", "covid19", "verified",
    "asymptomatic", "comment", "source", "kind"}). One row per clip; label covid19 / negative; subject =
    uuid (shared with the whole call it was cut from); a clip without "covid19" is labelled unknown.
    Files are not decoded: broken ones stay listed."""
    records = [
        {
            "path": str(src / "raw" / e["filename"]),
            "label": _covid19_label(e.get("covid19")),
            "subject": Path(e["filename"]).stem,
            "source_label": f"covid19={e.get('covid19')}",
            **_covid19_columns(e),
        }
        for e in _covid19_metadata(src, "covid19-cough")
    ]
    return from_records(keep_existing(records, "covid19-cough"))


@register("covid19-cough-uncut")
def import_covid19_cough_uncut(
    src: Path,
    *,
    background: int = 0,
    background_s: float = 4.0,
    ignore_around_s: float = 10.0,
    sides: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """covid19-cough whole calls: as covid19-cough plus "start_at" / "end_at" (s) of the one annotated
    cough per call -> one event row per valid annotation (label cough, column covid19); an
    annotation with end_at <= start_at or a missing time is skipped with a warning naming the file.

    `background` > 0 adds up to that many rows per call of label `background` (phone speech, line
    noise, silence: hard negatives for a cough detector), each `background_s` long, spread evenly
    over the parts of the call more than `ignore_around_s` seconds from the annotated cough (unannotated
    coughs cluster around it). Reads each call's header for its duration.

    `sides` (a folder) splits each call into its two sides, mono 16-bit FLAC at the call's rate:
    `sides/caller/{uuid}.flac` (the channel chosen by `caller_channel`) and `sides/operator/{uuid}.flac`.
    Rows then point at them, with a column side: the cough on the caller's side, and the whole
    operator's side as label speech (phone speech without coughs: every detection there is a false
    alarm); background rows come from the caller's side. Side files that exist, are newer than the
    call, agree in length and were chosen by today's SIDES_RULE are reused; a mono call gives the caller's side only, a broken one is
    skipped, each with a warning.
    """
    entries = _covid19_metadata(src, "covid19-cough-uncut")
    if not any("start_at" in e for e in entries):
        raise DataError(
            f"covid19-cough-uncut: {src / 'metadata.json'} has no start_at/end_at; use format covid19-cough"
        )
    events = []
    for e in entries:
        start, end = _seconds(e.get("start_at")), _seconds(e.get("end_at"))
        if start is None or end is None or not 0 <= start < end:
            times = f"start_at={e.get('start_at')} end_at={e.get('end_at')}"
            warn(f"covid19-cough-uncut: {e['filename']}: invalid annotation {times}; skipped")
            continue
        events.append({
            "path": str(src / "raw" / e["filename"]),
            "label": "cough",
            "start": start,
            "end": end,
            "subject": Path(e["filename"]).stem,
            "source_label": "cough",
            "covid19": e.get("covid19"),
            **_covid19_columns(e),
        })  # fmt: skip
    if sides is not None:
        events = _call_sides(keep_existing(events, "covid19-cough-uncut"), Path(sides).expanduser())
    records = []
    for event in events:
        records.append(event)
        if background > 0 and event["label"] == "cough":
            records += _background_rows(event, count=background, length=background_s, margin=ignore_around_s)
    return from_records(keep_existing(records, "covid19-cough-uncut"))


def caller_channel(y: np.ndarray, *, sample_rate: int, start_s: float, end_s: float) -> int:
    """Index of the caller's channel of a phone call `y` [channels, samples] at `sample_rate` Hz whose annotated
    cough spans `start_s`..`end_s` s: the channel whose 10-ms frame levels inside the annotation rise
    most above that channel's own loud level (the 90th percentile of its frame levels over the whole
    call), as the sum of those rises in dB over the frames (ties, e.g. no frame above: the
    highest single rise).

    Raw energy would pick the operator whenever their line is louder; the loudest frame alone
    picks a click of the other line inside a long annotated bout; the summed rise weighs how long
    and how far each channel stands out. DataError when the annotation holds no whole frame.
    """
    frame = max(1, round(_FRAME_S * sample_rate))
    frames = y.shape[1] // frame
    first, stop = int(start_s * sample_rate) // frame, min(int(np.ceil(end_s * sample_rate / frame)), frames)
    if first >= stop:
        raise DataError(f"annotation {start_s}..{end_s} s lies outside the audio (0..{y.shape[1] / sample_rate:.2f} s)")
    power = np.square(y[:, : frames * frame], dtype=np.float64).reshape(len(y), frames, frame).mean(axis=2)
    level = 10 * np.log10(power + _POWER_FLOOR)
    rise = level[:, first:stop] - np.percentile(level, 90, axis=1)[:, None]
    area = np.clip(rise, 0, None).sum(axis=1)
    return int(np.lexsort((rise.max(axis=1), area))[-1])


def _call_sides(events: list[dict], folder: Path) -> list[dict]:
    """Each call of `events` split into its sides under `folder` -> the caller's event row, then an
    operator row (label speech, whole file); calls that cannot be split are skipped with a warning."""
    try:
        for side in CALL_SIDES:
            (folder / side).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"covid19-cough-uncut: cannot make the sides folder {folder}: {e}") from None
    rule = folder / "sides-rule.txt"
    fresh = rule.is_file() and rule.read_text(encoding="utf-8").strip() == SIDES_RULE
    rows = []
    with display.progress(len(events), description="splitting calls") as advance:
        for event in events:
            rows += _call_rows(event, folder=folder, reuse=fresh)
            advance()
    if not rows:
        raise DataError(f"covid19-cough-uncut: none of the {len(events)} calls could be split into sides")
    rule.write_text(SIDES_RULE + "\n", encoding="utf-8")
    return rows


def _call_rows(event: dict, *, folder: Path, reuse: bool) -> list[dict]:
    """The caller's event row and the operator's row of the call of `event`, its sides written under
    `folder` (or reused when `reuse` and they are complete); [] with a warning when it cannot be split."""
    paths = {side: folder / side / f"{event['subject']}.flac" for side in CALL_SIDES}
    if not (reuse and _reusable(list(paths.values()), source=Path(event["path"]))):
        try:
            audio, sr = _sides(event)
        except AudioError as e:
            warn(f"covid19-cough-uncut: {e}; skipped")
            return []
        except DataError as e:
            warn(f"covid19-cough-uncut: {event['path']}: {e}; skipped")
            return []
        for side, y in audio.items():
            _write_flac(paths[side], y, sr=sr)
        paths = {side: paths[side] for side in audio}
    rows = [event | {"path": str(paths["caller"]), "side": "caller"}]
    if "operator" in paths:
        rows.append(event | {
            "path": str(paths["operator"]), "label": "speech", "start": None, "end": None,
            "source_label": "speech", "sound": "speech", "side": "operator",
        })  # fmt: skip
    return rows


def _sides(event: dict) -> tuple[dict[str, np.ndarray], int]:
    """The sides of the call of `event`: ({"caller": y, "operator": y}, rate in Hz), each float32 [samples];
    a mono call gives the caller's side only, with a warning."""
    y, sr = _load_channels(event["path"])
    if len(y) == 1:
        warn(f"covid19-cough-uncut: {event['path']}: mono, so the one channel is taken as the caller; no operator row")
        return {"caller": y[0]}, sr
    if len(y) != 2:
        raise DataError(f"{len(y)} channels, expected 2 (caller and operator)")
    caller = caller_channel(y, sample_rate=sr, start_s=event["start"], end_s=event["end"])
    return {"caller": y[caller], "operator": y[1 - caller]}, sr


def _load_channels(path: str) -> tuple[np.ndarray, int]:
    """Every channel of `path`: float32 [channels, samples] in [-1, 1] and the rate in Hz.

    respira.audio decodes to mono only: its header check names broken files (AudioError), then
    soundfile decodes the channels; a decode shorter than the header declares is an AudioError too.
    """
    import soundfile as sf

    from respira.audio import info

    header = info(path, check=False)
    try:
        y, sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.SoundFileError as e:
        raise AudioError(f"{path}: cannot decode its channels ({e})") from None
    if header.frames - len(y) > max(0.1 * sr, 0.01 * header.frames):
        raise AudioError(
            f"{path}: truncated or corrupt: the header declares {header.frames / sr:.2f} s "
            f"but only {len(y) / sr:.2f} s decode"
        )
    return np.clip(y.T, -1.0, 1.0), sr


def _reusable(paths: list[Path], *, source: Path) -> bool:
    """Whether the side files `paths` of the call `source` exist, are newer than it and agree in length
    (they are written under a temporary name and renamed, so a file there is never partial)."""
    import soundfile as sf

    try:
        changed = source.stat().st_mtime
        if any(p.stat().st_mtime < changed for p in paths):
            return False
        lengths = {sf.info(str(p)).frames for p in paths}
    except (OSError, sf.SoundFileError):
        return False
    return len(lengths) == 1 and 0 not in lengths


def _write_flac(path: Path, y: np.ndarray, *, sr: int) -> None:
    """Write mono `y` [samples] as 16-bit FLAC at `sr` Hz: to a temporary name, then renamed into place."""
    import soundfile as sf

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.flac")
    try:
        sf.write(str(tmp), y, sr, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    except (OSError, sf.SoundFileError) as e:
        raise DataError(f"covid19-cough-uncut: cannot write {path}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _background_rows(event: dict, *, count: int, length: float, margin: float) -> list[dict]:
    """Up to `count` rows of `length` s from the call of `event`, all > `margin` s from the event."""
    from respira.audio import info

    try:
        duration = info(event["path"], check=False).duration_s
    except AudioError as e:
        warn(f"covid19-cough-uncut: no background rows: {e}")
        return []
    free = [(0.0, event["start"] - margin), (event["end"] + margin, duration)]
    slots = [(a + i * length, a + (i + 1) * length) for a, b in free for i in range(int(max(b - a, 0) // length))]
    picks = np.linspace(0, len(slots) - 1, min(count, len(slots))).round().astype(int) if slots else []
    base = {k: v for k, v in event.items() if k not in ("start", "end")}
    return [base | {"start": slots[i][0], "end": slots[i][1], "label": "background", "source_label": "background",
                    "sound": "background"} for i in dict.fromkeys(picks)]


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _seconds(value: object) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@register("coughvid")
def import_coughvid(src: Path) -> pd.DataFrame:
    """COUGHVID: `metadata_compiled.csv` and `{uuid}.webm` / `{uuid}.ogg` beside it (or below SRC).

    label from status (healthy, symptomatic, COVID-19 -> covid19, empty -> unknown); subject = uuid;
    columns cough_detected (0-1, a regression target), age, sex, respiratory_condition,
    fever_muscle_pain, status_SSL (v3) and the expert labels (quality_1 ... severity_3, _4 in v3).
    Rows without audio are skipped, counted in one warning.
    """
    meta = find_file("metadata_compiled.csv", src)
    if meta is None:
        raise DataError(f"coughvid: expected {src / 'metadata_compiled.csv'} with the audio beside it")
    table = pd.read_csv(meta, dtype={"uuid": str, "status": str, "gender": str})
    if not {"uuid", "status"} <= set(table.columns):
        raise DataError(f"coughvid: {meta} lacks the uuid / status columns")
    table = table.rename(columns={"gender": "sex"})
    audio = audio_index(src)
    expert = [c for c in table.columns if _EXPERT_COLUMN.search(c)]
    keep = [c for c in _COUGHVID_KEEP if c in table.columns] + expert
    records, missing = [], 0
    for row in table.to_dict("records"):
        path = audio.get(row["uuid"])
        if path is None:
            missing += 1
            continue
        status = _text(row["status"])
        records.append({
            "path": str(path),
            "label": map_label(status, COUGHVID_LABELS),
            "subject": row["uuid"],
            "source_label": status,
            "sound": "cough",
            **{k: row[k] for k in keep},
        })  # fmt: skip
    if missing:
        warn(f"coughvid: skipped {missing} of {len(table)} row(s) of {meta.name} with no {{uuid}}.webm/.ogg in {src}")
    if not records:
        raise DataError(f"coughvid: no audio under {src} matches a uuid of {meta}")
    df = from_records(records)
    if "cough_detected" in df.columns:
        df["cough_detected"] = pd.to_numeric(df["cough_detected"], errors="coerce").astype(float)
    return df


@register("coswara")
def import_coswara(src: Path, *, sounds: str | None = None) -> pd.DataFrame:
    """Coswara: `combined_data.csv` (id, a, covid_status, record_date, g, ...; in SRC or its parent) and
    `{date}/{id}/{recording}.wav` under SRC -> one row per existing file.

    Columns: recording (cough-heavy, vowel-a, ...), sound (its kind: cough, breathing, counting,
    vowel), sex, age and the other participant columns. label from covid_status (positive_* ->
    covid19, under_validation (result pending) -> unknown, others normalised); subject = id.
    `sounds`: comma-separated recordings or kinds to keep, e.g. "cough-heavy,cough-shallow" or "cough".
    """
    meta = find_file("combined_data.csv", src, src.parent)
    if meta is None:
        raise DataError(f"coswara: expected combined_data.csv in {src} or {src.parent}")
    table = pd.read_csv(meta, dtype={"id": str, "covid_status": str, "g": str})
    if not {"id", "covid_status"} <= set(table.columns):
        raise DataError(f"coswara: {meta} lacks the id / covid_status columns")
    wanted = _coswara_wanted(sounds)
    people = {r["id"]: r for r in table.rename(columns={"a": "age", "g": "sex"}).to_dict("records")}
    records, strangers = [], set()
    for root, dirs, files in os.walk(src):
        dirs.sort()
        person = os.path.basename(root)
        for name in sorted(files):
            recording, ext = os.path.splitext(name)
            if ext.lower() != ".wav" or recording not in wanted:
                continue
            if person not in people:
                strangers.add(person)
                continue
            info = {k: v for k, v in people[person].items() if k not in ("id", "covid_status")}
            status = _text(people[person]["covid_status"])
            records.append({
                "path": os.path.join(root, name),
                "label": map_label(status, COSWARA_LABELS),
                "subject": person,
                "source_label": status,
                "recording": recording,
                "sound": recording.split("-")[0],
                **info,
            })  # fmt: skip
    if strangers:
        first = sorted(strangers)[0]
        warn(f"coswara: skipped recordings of {len(strangers)} participant folder(s) not in {meta.name}, e.g. {first}")
    if not records:
        raise DataError(f"coswara: no {{date}}/{{id}}/{{recording}}.wav files under {src} for ids in {meta}")
    return from_records(records)


def _coswara_wanted(sounds: str | None) -> set[str]:
    """Recording names selected by comma-separated recordings or kinds (all when None)."""
    if sounds is None:
        return set(COSWARA_RECORDINGS)
    asked = {s.strip() for s in sounds.split(",") if s.strip()}
    kinds = {r.split("-")[0] for r in COSWARA_RECORDINGS}
    unknown = sorted(asked - set(COSWARA_RECORDINGS) - kinds)
    if unknown or not asked:
        raise DataError(
            f"coswara: unknown sounds {', '.join(unknown) or repr(sounds)}; "
            f"choose from {', '.join(COSWARA_RECORDINGS)} or {', '.join(sorted(kinds))}"
        )
    return {r for r in COSWARA_RECORDINGS if r in asked or r.split("-")[0] in asked}


@register("virufy")
def import_virufy(src: Path, *, segmented: bool = True) -> pd.DataFrame:
    """Virufy open clinical data: `labels.csv` (in SRC or SRC/clinical) listing one recording per patient
    and the audio below SRC (`original/`, `segmented/{neg,pos}/`).

    Column names differ between releases; the first present of each is used: file
    cough_filename / filename / file / path; label corona_test / pcr_test_result / covid19 /
    covid_status / label (positive -> covid19, negative); subject patient_id, else the recording's
    file stem. With `segmented` (default) a recording whose segments `{stem}-{n}.{ext}` exist
    gives one row per segment (column segment = n); otherwise the recording itself.
    """
    meta = find_file("labels.csv", src, src / "clinical")
    if meta is None:
        raise DataError(f"virufy: expected labels.csv in {src} or {src / 'clinical'}")
    table = pd.read_csv(meta, dtype=str, keep_default_na=False)
    columns = {c.strip().lower(): c for c in table.columns}
    file_col = next((columns[c] for c in _VIRUFY_FILE_COLUMNS if c in columns), None)
    label_col = next((columns[c] for c in _VIRUFY_LABEL_COLUMNS if c in columns), None)
    if file_col is None or label_col is None:
        raise DataError(
            f"virufy: {meta} needs a file column ({' / '.join(_VIRUFY_FILE_COLUMNS)}) and a label column "
            f"({' / '.join(_VIRUFY_LABEL_COLUMNS)}); it has {', '.join(table.columns)}"
        )
    subject_col = columns.get("patient_id")
    audio = audio_index(src)
    segments = _virufy_segments(audio) if segmented else {}
    records, missing = [], []
    for row in table.to_dict("records"):
        stem = Path(row[file_col]).stem
        raw = row[label_col]
        base = {
            "label": map_label(raw, VIRUFY_LABELS),
            "subject": row[subject_col] if subject_col and row[subject_col] else stem,
            "source_label": raw,
            "recording": stem,
            "sound": "cough",
            **{("sex" if k.strip().lower() == "gender" else k): v
               for k, v in row.items() if k not in (file_col, label_col, subject_col)},
        }  # fmt: skip
        if stem in segments:
            records += [{"path": str(p), **base, "segment": n} for n, p in segments[stem]]
        elif stem in audio:
            records.append({"path": str(audio[stem]), **base})
        else:
            missing.append(row[file_col])
    if missing:
        warn(f"virufy: skipped {len(missing)} recording(s) of {meta.name} with no audio under {src}, e.g. {missing[0]}")
    if not records:
        raise DataError(f"virufy: no audio under {src} for the recordings in {meta}")
    return from_records(records)


def _virufy_segments(audio: dict[str, Path]) -> dict[str, list[tuple[int, Path]]]:
    """Recording stem -> [(n, path)] for segment files named `{stem}-{n}`."""
    out: dict[str, list[tuple[int, Path]]] = {}
    for stem, path in audio.items():
        m = _SEGMENT.match(stem)
        if m:
            out.setdefault(m[1], []).append((int(m[2]), path))
    return {k: sorted(v) for k, v in out.items()}
