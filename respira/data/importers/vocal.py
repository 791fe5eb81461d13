"""Importers for vocal-sound and environmental-sound clip sets: Nonverbal Vocalization, VocalSound, ESC-50."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from respira.data.importers.registry import expect_file, keep_existing, list_audio, register, warn
from respira.data.labels import map_label
from respira.data.manifest import from_records
from respira.errors import DataError

NONVERBAL_LABELS = {
    "coughing": "cough", "sneezing": "sneeze", "throat_clearing": "throat_clear", "sighing": "sigh",
    "laughing": "laugh", "crying": "crying", "screaming": "scream", "yawning": "yawn", "moaning": "moan",
    "panting": "panting", "nose_blowing": "nose_blow", "lip_popping": "lip_pop", "lip_smacking": "lip_smack",
    "teeth_chattering": "teeth_chatter", "teeth_grinding": "teeth_grind", "tongue_clicking": "tongue_click",
}  # fmt: skip
VOCALSOUND_LABELS = {"laughter": "laugh", "throatclearing": "throat_clear"}
ESC50_LABELS = {
    "coughing": "cough", "sneezing": "sneeze", "breathing": "breathing", "snoring": "snoring",
    "laughing": "laugh", "crying_baby": "crying",
}  # fmt: skip

_NONVERBAL_NAME = re.compile(
    r"^(?P<speaker>[^_]+)_(?P<class_idx>\d+)_(?P<trial>\d+)_(?P<sex>[01])_(?P<age>\d+)"
    r"_(?P<location>[^_]+)_(?P<quality>[^_]+)_(?P<noise>[^_]+)$"
)
_NONVERBAL_META = "Nonverbal_Vocalization_metadata.json"
_VOCALSOUND_NAME = re.compile(r"^(?P<speaker>[fm]\d+)_(?P<collection>\d+)_(?P<label>[a-z]+)$")
_VOCALSOUND_SPLITS = {"tr": "train", "val": "val", "te": "test"}
_VOCALSOUND_FIELDS = ("sex", "age", "country", "native_language", "health_condition")


@register("nonverbal")
def import_nonverbal(src: Path) -> pd.DataFrame:
    """Nonverbal Vocalization: `Nonverbal_Vocalization_metadata.json` ({speakerID: {"sex", "age", "class"}})
    and `{class}/{speakerID}_{classIdx}_{trial}_{sex 0=F,1=M}_{age}_{location}_{quality}_{noise}.wav`.

    subject = speakerID. sex / age come from the metadata file (one value per speaker) where
    it lists the speaker, else from the file name. Columns: sex, age, trial, location, quality, noise.
    """
    files = [p for p in list_audio(src) if len(p.relative_to(src).parts) == 2]
    if not files:
        raise DataError(
            f"nonverbal: no clips in {src}; expected {src}/{{class}}/{{speakerID}}_..._{{noise}}.wav "
            f"(class folders such as coughing/) and {_NONVERBAL_META}"
        )
    speakers = _nonverbal_speakers(src / _NONVERBAL_META)
    records, odd = [], []
    for path in files:
        m = _NONVERBAL_NAME.match(path.stem)
        fields = m.groupdict() if m else {"speaker": path.stem.split("_")[0]}
        if m is None:
            odd.append(path.name)
        known = speakers.get(fields["speaker"], {})
        sex = str(known.get("sex", "")).lower() or {"0": "female", "1": "male"}.get(fields.get("sex", ""), "")
        records.append({
            "path": str(path),
            "label": map_label(path.parent.name, NONVERBAL_LABELS),
            "subject": fields["speaker"],
            "source_label": path.parent.name,
            "sex": sex,
            "age": known.get("age", _int_or_none(fields.get("age"))),
            **{k: _int_or_none(fields.get(k)) for k in ("trial", "location", "quality", "noise")},
        })  # fmt: skip
    if odd:
        layout = "{speakerID}_{classIdx}_..._{noise}"
        warn(f"nonverbal: {len(odd)} file name(s) not in the {layout} layout, e.g. {odd[0]}")
    return from_records(records)


def _nonverbal_speakers(path: Path) -> dict[str, dict]:
    if not path.is_file():
        warn(f"nonverbal: {path} not found; sex and age come from the file names")
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"nonverbal: cannot read {path}: {e}") from None
    if not isinstance(table, dict):
        raise DataError(f"nonverbal: {path} should map speakerID -> {{sex, age, class}}")
    return {str(k): v for k, v in table.items() if isinstance(v, dict)}


@register("vocalsound")
def import_vocalsound(src: Path) -> pd.DataFrame:
    """VocalSound: `audio_16k/{speaker}_{collection}_{label}.wav` (e.g. f0003_0_cough.wav; `audio_44k/`
    or the files anywhere under SRC also work), splits from `datafiles/{tr,val,te}.json`, speaker
    metadata from `meta/*_meta.json` or `.csv` where present (sex, age, country, native_language,
    health_condition). subject = speaker; sex falls back to the speaker prefix (f / m).
    """
    folder = next((src / d for d in ("audio_16k", "audio_44k") if (src / d).is_dir()), src)
    files = [p for p in list_audio(folder) if _VOCALSOUND_NAME.match(p.stem)]
    if not files:
        layout = "{speaker}_{n}_{label}.wav (e.g. f0003_0_cough.wav)"
        raise DataError(f"vocalsound: no clips named {layout} under {folder}")
    splits = _vocalsound_splits(src / "datafiles")
    speakers = _vocalsound_speakers(src / "meta")
    records = []
    for path in files:
        m = _VOCALSOUND_NAME.match(path.stem)
        speaker = m["speaker"]
        meta = speakers.get(speaker, {})
        records.append({
            "path": str(path),
            "label": map_label(m["label"], VOCALSOUND_LABELS),
            "subject": speaker,
            "split": splits.get(path.stem, ""),
            "source_label": m["label"],
            "collection": int(m["collection"]),
            **{k: meta.get(k) for k in _VOCALSOUND_FIELDS},
        })  # fmt: skip
        if not records[-1]["sex"]:
            records[-1]["sex"] = {"f": "female", "m": "male"}[speaker[0]]
    return from_records(records)


def _vocalsound_splits(folder: Path) -> dict[str, str]:
    """File stem -> train/val/test from the AST-style datafiles ({"data": [{"wav": ..., "labels": ...}]})."""
    out: dict[str, str] = {}
    for name, split in _VOCALSOUND_SPLITS.items():
        path = folder / f"{name}.json"
        if not path.is_file():
            continue
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["data"]
            out.update({Path(str(e["wav"])).stem: split for e in entries})
        except (ValueError, KeyError, TypeError) as e:
            form = "{'data': [{'wav': ...}]}"
            raise DataError(f"vocalsound: {path} is not a datafile of the form {form}: {e}") from None
    return out


def _vocalsound_speakers(folder: Path) -> dict[str, dict]:
    """Speaker -> {sex, age, country, native_language, health_condition} from whatever meta files exist.

    Tolerates JSON {speaker: [spk_id, gender, age, country, language, health]} or {speaker: {...}},
    a JSON list of such rows, and CSV files with a speaker / spk_id column.
    """
    out: dict[str, dict] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.csv")):
        try:
            rows = _meta_rows(path)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
            warn(f"vocalsound: skipped unreadable speaker metadata {path}: {str(e).splitlines()[0]}")
            continue
        for row in rows:
            speaker = str(row.pop("speaker", "")).strip()
            if speaker:
                out[speaker] = {k: row.get(k) for k in _VOCALSOUND_FIELDS}
    for meta in out.values():
        if meta["sex"]:
            meta["sex"] = {"f": "female", "m": "male"}.get(str(meta["sex"]).strip().lower()[:1], meta["sex"])
    return out


def _meta_rows(path: Path) -> list[dict]:
    aliases = {
        "spk_id": "speaker", "speaker_id": "speaker", "gender": "sex", "native language": "native_language",
        "language": "native_language", "health": "health_condition", "health condition": "health_condition",
    }  # fmt: skip

    def named(d: dict) -> dict:
        return {aliases.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in d.items()}

    def from_list(values: list, key: str | None = None) -> dict:
        values = list(values)
        speaker = key if key is not None else values.pop(0)
        if key is not None and values and str(values[0]) == key:
            values.pop(0)
        return {"speaker": speaker, **dict(zip(_VOCALSOUND_FIELDS, values))}

    if path.suffix == ".csv":
        return [named(r) for r in pd.read_csv(path, dtype=str).to_dict("records")]
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        return [from_list(v, k) if isinstance(v, list) else {"speaker": k, **named(v)} for k, v in data.items()]
    return [from_list(v) if isinstance(v, list) else named(v) for v in data]


@register("esc50")
def import_esc50(src: Path) -> pd.DataFrame:
    """ESC-50: `meta/esc50.csv` (filename, fold, target, category, esc10, src_file, take) and `audio/{filename}`.

    subject = src_file (the Freesound recording the 5 s clips were cut from); columns fold, esc10, take.
    """
    meta = expect_file(src / "meta" / "esc50.csv", "esc50", "metadata")
    table = pd.read_csv(meta, dtype={"filename": str, "category": str, "src_file": str})
    missing = {"filename", "category", "fold", "src_file"} - set(table.columns)
    if missing:
        raise DataError(f"esc50: {meta} lacks column(s) {', '.join(sorted(missing))}")
    audio = src / "audio"
    if not audio.is_dir():
        raise DataError(f"esc50: expected the clips in folder {audio}")
    records = [
        {
            "path": str(audio / r.filename),
            "label": map_label(r.category, ESC50_LABELS),
            "subject": r.src_file,
            "source_label": r.category,
            "fold": int(r.fold),
            **({"esc10": bool(r.esc10)} if "esc10" in table.columns else {}),
            **({"take": r.take} if "take" in table.columns else {}),
        }
        for r in table.itertuples(index=False)
    ]
    return from_records(keep_existing(records, "esc50"))


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
