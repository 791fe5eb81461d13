"""Events: bursts from frame levels, bouts, and the CSV / JSON / Audacity / Raven files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from respira.detect import DetectConfig, Event, group_bouts
from respira.detect.events import (
    RAVEN_COLUMNS, read_events_csv, write_audacity, write_events_csv, write_events_json, write_raven,
)  # fmt: skip
from respira.detect.gate import Levels
from respira.detect.segment import find_bursts
from respira.errors import DataError

FRAME_S = 0.02
CFG = DetectConfig()  # floor -60 dB: loud > -52 dB (gate_db 8), sounding > -57 dB (extend_db 3); merge_gap 0.15 s
# (8 frames), onset 12 dB, min 0.06 s (3 frames), max 1.5 s (75 frames)


def _bursts(db: np.ndarray, *, cfg: DetectConfig = CFG) -> list[tuple[int, int, int]]:
    return find_bursts(Levels(0, db, np.full(len(db), -60.0)), frame_s=FRAME_S, cfg=cfg)


def _level(n: int, *spans: tuple[int, int, float]) -> np.ndarray:
    """A background of -60 dB with spans (start frame, stop frame, dB)."""
    db = np.full(n, -60.0)
    for a, b, v in spans:
        db[a:b] = v
    return db


def test_a_run_of_loud_frames_is_one_burst_with_its_loudest_frame():
    db = _level(100, (10, 30, -20.0))
    db[17] = -10.0
    assert _bursts(db) == [(10, 30, 17)]


def test_a_burst_extends_over_its_quieter_tail_but_needs_a_loud_frame():
    db = _level(100, (10, 15, -30.0), (15, 25, -55.0), (50, 60, -55.0))  # -55: sounding, not loud
    assert _bursts(db) == [(10, 25, 10)]


def test_short_gaps_are_merged_long_ones_are_not():
    """A cough's level can dip into the noise between its phases: a gap < merge_gap_s is bridged."""
    assert _bursts(_level(100, (10, 20, -20.0), (20, 27, -58.0), (27, 37, -48.0))) == [(10, 37, 10)]  # 7 frames
    assert _bursts(_level(100, (10, 20, -20.0), (20, 28, -58.0), (28, 38, -48.0))) == [(10, 20, 10), (28, 38, 28)]


def test_a_sharp_onset_after_a_merged_gap_starts_a_new_burst():
    """Two coughs 0.06 s apart: merged by the gap rule, split again at the second explosive onset."""
    db = _level(100, (10, 25, -20.0), (28, 45, -15.0))
    assert _bursts(db) == [(10, 25, 10), (28, 45, 28)]


def test_a_gradual_rise_inside_a_burst_is_not_an_onset():
    db = _level(100, (10, 40, -35.0))
    db[20:30] = np.linspace(-35, -20, 10)  # +15 dB over 10 frames: the voiced tail of one cough
    assert _bursts(db) == [(10, 40, 29)]


def test_too_short_bursts_are_dropped_and_long_ones_split_at_their_quietest_frame():
    assert _bursts(_level(100, (10, 12, -20.0))) == []  # 0.04 s < min_event_s: a click
    db = _level(200, (10, 110, -20.0))  # 2 s of steady sound
    db[70] = -30.0  # a dip, but the rise after it (10 dB) is no onset
    assert _bursts(db) == [(10, 70, 10), (70, 110, 71)]
    assert all(b - a <= 75 for a, b, _ in _bursts(_level(400, (10, 390, -20.0))))


def test_bouts_group_events_closer_than_the_gap_per_file():
    events = [Event("a.wav", s, s + 0.3, "cough", 0.9) for s in (10.0, 10.8, 11.9, 20.0, 60.0)]
    events.append(Event("b.wav", 10.5, 10.8, "cough", 0.9))
    bouts = group_bouts(events, gap_s=2.0)
    assert [(b.file, b.start, b.count) for b in bouts] == [("a.wav", 10.0, 3), ("a.wav", 20.0, 1), ("a.wav", 60.0, 1),
                                                           ("b.wav", 10.5, 1)]
    assert bouts[0].end == pytest.approx(12.2)
    assert len(group_bouts(events, gap_s=0.1)) == 6


@pytest.fixture()
def events() -> list[Event]:
    return [Event("night/a.wav", 1.23456, 1.6, "cough", 0.912345), Event("night/a.wav", 75.0, 75.41, "cough", 0.5)]


def test_events_csv_and_json_round_trip(tmp_path, events):
    write_events_csv(events, tmp_path / "events.csv")
    with open(tmp_path / "events.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "start", "end", "label", "score"]
    assert rows[1] == ["night/a.wav", "1.235", "1.6", "cough", "0.9123"]
    back = read_events_csv(tmp_path / "events.csv")
    assert [(e.file, e.start, e.label) for e in back] == [("night/a.wav", 1.235, "cough"), ("night/a.wav", 75.0, "cough")]
    write_events_json(events, tmp_path / "events.json")
    assert json.loads((tmp_path / "events.json").read_text())[1] == {
        "file": "night/a.wav", "start": 75.0, "end": 75.41, "label": "cough", "score": 0.5}


def test_audacity_and_raven_label_tracks(tmp_path, events):
    write_audacity(events, tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text().splitlines() == ["1.235\t1.600\tcough", "75.000\t75.410\tcough"]
    write_raven(events, tmp_path / "r.txt")
    lines = [line.split("\t") for line in (tmp_path / "r.txt").read_text().splitlines()]
    assert lines[0] == list(RAVEN_COLUMNS)
    assert lines[0][:5] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)"]
    assert lines[2] == ["2", "Waveform 1", "1", "75.000", "75.410", "0", "8000", "cough", "0.5000"]


def test_reading_a_bad_events_file_names_the_problem(tmp_path):
    (tmp_path / "e.csv").write_text("file,begin,end,score\na.wav,1,2,0.5\n")
    with pytest.raises(DataError, match="missing column.*start"):
        read_events_csv(tmp_path / "e.csv")
    (tmp_path / "e.csv").write_text("file,start,end,score\na.wav,1,x,0.5\n")
    with pytest.raises(DataError, match="row 1"):
        read_events_csv(tmp_path / "e.csv")
    with pytest.raises(DataError, match="not found"):
        read_events_csv(tmp_path / "missing.csv")
