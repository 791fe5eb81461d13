"""Manifests: read / write round trips, validation messages, summaries on audio with known durations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from respira.audio import write_wav
from respira.data import (
    MANIFEST_COLUMNS,
    VOCABULARY,
    DataWarning,
    from_records,
    map_label,
    normalise_label,
    read_manifest,
    summarize,
    validate,
    write_manifest,
)
from respira.errors import DataError

SR = 16000


def _tone(rng: np.random.Generator, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 800) * t)).astype(np.float32)


@pytest.fixture()
def clips(tmp_path, rng):
    """Two clips of 0.5 s and 1.25 s in tmp_path/audio and a manifest frame over them."""
    (tmp_path / "audio").mkdir()
    for name, seconds in (("a.wav", 0.5), ("b.wav", 1.25)):
        write_wav(tmp_path / "audio" / name, _tone(rng, seconds), sample_rate=SR)
    return from_records(
        [
            {"path": str(tmp_path / "audio" / "a.wav"), "label": "cough", "subject": "s1", "sex": "female"},
            {"path": str(tmp_path / "audio" / "b.wav"), "label": "sneeze", "subject": "s2", "split": "test"},
            {"path": str(tmp_path / "audio" / "b.wav"), "label": "cough", "start": 0.25, "end": 1.0, "subject": "s2"},
        ]
    )


def test_from_records_puts_required_columns_first_with_defaults(clips):
    assert tuple(clips.columns[:7]) == MANIFEST_COLUMNS
    assert list(clips.columns[7:]) == ["sex"]
    assert clips["split"].tolist() == ["", "test", ""]
    assert np.isnan(clips.loc[0, "start"]) and clips.loc[2, "end"] == 1.0


@pytest.mark.parametrize("name", ["m.csv", "m.jsonl"])
def test_round_trip_keeps_rows_and_writes_paths_relative_inside_the_folder(tmp_path, clips, name):
    outside = tmp_path.parent / "elsewhere.wav"
    extra = from_records([{"path": str(outside), "label": "laugh", "subject": "s9"}])
    df = pd.concat([clips, extra], ignore_index=True)
    write_manifest(df, tmp_path / name)
    text = (tmp_path / name).read_text()
    assert "audio/a.wav" in text and str(tmp_path / "audio") not in text  # relative inside
    assert str(outside) in text  # absolute outside
    back = read_manifest(tmp_path / name)
    assert back["path"].tolist() == [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "audio" / "b.wav"),
                                     str(tmp_path / "audio" / "b.wav"), str(outside)]  # fmt: skip
    assert back["label"].tolist() == ["cough", "sneeze", "cough", "laugh"]
    assert back["split"].tolist() == ["", "test", "", ""]
    assert back.loc[2, "start"] == 0.25 and np.isnan(back.loc[0, "end"])
    assert back.loc[0, "sex"] == "female"


def test_read_keeps_numeric_looking_subjects_as_text(tmp_path):
    (tmp_path / "m.csv").write_text(",".join(MANIFEST_COLUMNS) + "\nx.wav,normal,0.5,1.5,101,train,\n")
    df = read_manifest(tmp_path / "m.csv")
    assert df.loc[0, "subject"] == "101"
    assert df.loc[0, "path"] == str(tmp_path / "x.wav")


def test_read_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "missing.csv")
    (tmp_path / "m.txt").write_text("path,label\n")
    with pytest.raises(DataError, match=r"m\.txt.*unknown manifest file type '\.txt'"):
        read_manifest(tmp_path / "m.txt")
    (tmp_path / "m.csv").write_text("path,label\nx.wav,cough\n")
    with pytest.raises(DataError, match=r"m\.csv: missing required column\(s\) start, end, subject, split, source_"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "e.csv").write_text(",".join(MANIFEST_COLUMNS) + "\n")
    with pytest.raises(DataError, match=r"e\.csv: empty manifest"):
        read_manifest(tmp_path / "e.csv")
    (tmp_path / "t.csv").write_text(",".join(MANIFEST_COLUMNS) + "\nx.wav,cough,soon,,s,,\n")
    with pytest.raises(DataError, match=r"row 1: start 'soon' is not a number"):
        read_manifest(tmp_path / "t.csv")


def test_invalid_intervals_raise_or_are_dropped_with_a_warning_naming_rows(tmp_path):
    rows = [
        {"path": "a.wav", "label": "cough", "start": 1.0, "end": 2.0, "subject": "s"},
        {"path": "a.wav", "label": "cough", "start": 5.0, "end": 2.0, "subject": "s"},
        {"path": "a.wav", "label": "cough", "start": -1.0, "end": 2.0, "subject": "s"},
        {"path": "a.wav", "label": "cough", "subject": "s"},
    ]
    write_manifest(from_records(rows), tmp_path / "m.csv")
    with pytest.raises(DataError, match=r"m\.csv: invalid start/end in rows 2, 3"):
        read_manifest(tmp_path / "m.csv")
    with pytest.warns(DataWarning, match=r"dropped 2 row\(s\).*rows 2, 3"):
        df = read_manifest(tmp_path / "m.csv", drop_invalid=True)
    assert df["start"].tolist()[0] == 1.0 and len(df) == 2
    assert len(read_manifest(tmp_path / "m.csv", keep_invalid=True)) == 4


def test_validate_names_rows(clips, tmp_path):
    df = pd.concat(
        [
            clips,
            from_records([
                {"path": str(tmp_path / "gone.wav"), "label": "cough", "subject": "s3", "split": "dev"},
                {"path": str(tmp_path / "audio" / "a.wav"), "label": "cough", "start": 5.0, "end": 2.0},
            ]),
        ],
        ignore_index=True,
    )  # fmt: skip
    assert validate(clips, check_files=True) == []
    problems = validate(df, check_files=True)
    assert f"row 4: file not found: {tmp_path / 'gone.wav'}" in problems
    assert "row 4: unknown split 'dev' (expected one of train, val, test or empty)" in problems
    assert "row 5: end 2 <= start 5" in problems
    assert any(p.startswith("row 5: empty subject") for p in problems)
    assert not any(p.startswith("row 4: file") for p in validate(df))  # files only checked on request
    with pytest.raises(DataError, match="missing required column"):
        validate(df.drop(columns=["subject"]))


def test_summarize_counts_and_decoded_durations(clips):
    s = summarize(clips)
    assert s["rows"] == 3 and s["subjects"] == 2 and s["invalid"] == 0
    assert s["labels"] == {"cough": 2, "sneeze": 1}
    assert s["splits"] == {"test": 1, "unassigned": 2}
    # whole files 0.5 s + 1.25 s, one event of 0.75 s
    assert s["duration_s"] == pytest.approx(2.5, abs=1e-3)
    assert s["unreadable"] == [] and s["errors"] == {}
    json.dumps(s)  # JSON-ready as it is


def test_summarize_reports_unreadable_files_and_events_past_the_end(clips, tmp_path):
    broken = tmp_path / "audio" / "broken.wav"
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")  # a truncated header
    a = tmp_path / "audio" / "a.wav"
    df = pd.concat(
        [
            clips,
            from_records([
                {"path": str(broken), "label": "cough", "subject": "s4"},
                {"path": str(a), "label": "cough", "start": 0.2, "end": 3.0, "subject": "s1"},
                {"path": str(a), "label": "cough", "start": 2.0, "end": 1.0, "subject": "s1"},
            ]),
        ],
        ignore_index=True,
    )  # fmt: skip
    s = summarize(df)
    assert s["unreadable"] == [str(broken)]
    assert "broken.wav" in s["errors"][str(broken)]
    assert s["invalid"] == 1
    assert s["warnings"][str(a)] == [
        "row 5: event end 3 s is past the end of the file (0.500 s)"
    ]
    assert s["duration_s"] == pytest.approx(0.5 + 1.25 + 0.75 + 2.8, abs=1e-3)


def test_summarize_without_audio_reads_no_file(tmp_path):
    df = from_records([{"path": str(tmp_path / "no.wav"), "label": "cough", "start": 1.0, "end": 1.5, "subject": "x"}])
    s = summarize(df, check_audio=False)
    assert s["duration_s"] == 0.5 and s["unreadable"] == []
    s = summarize(pd.concat([df, from_records([{"path": "w.wav", "label": "cough"}])]), check_audio=False)
    assert s["duration_s"] is None  # whole-file rows without headers: unknown


def test_labels_normalise_and_map():
    assert normalise_label(" Throat-clearing ") == "throat_clearing"
    assert normalise_label("crying baby") == "crying_baby"
    assert map_label("Throat-Clearing", {"throat_clearing": "throat_clear"}) == "throat_clear"
    assert map_label("door knock", {"coughing": "cough"}) == "door_knock"
    assert {"cough", "crackle", "wheeze", "both", "normal", "covid19", "other"} <= set(VOCABULARY)
    assert len(set(VOCABULARY)) == len(VOCABULARY)
