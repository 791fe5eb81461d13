"""Event evaluation on hand-made detections and annotations, against numbers worked out by hand."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from respira.data.manifest import from_records
from respira import audio
from respira.detect.evaluate import evaluate_events, match_detections, write_event_metrics
from respira.detect.review import write_review
from respira.errors import DataError

# Recording A: 1842 s with coughs at [100, 101] and [500, 501]. Ignore zones of 10 s: [90, 111]
# and [490, 511], 42 s in all, so 1800 s = 0.5 h lie outside them.
A, B = "/data/night/a.wav", "/data/night/b.wav"
ANNOTATIONS = from_records([
    {"path": A, "label": "cough", "start": 100.0, "end": 101.0},
    {"path": A, "label": "cough", "start": 500.0, "end": 501.0},
])  # fmt: skip
DETECTIONS = pd.DataFrame(
    [
        ("/elsewhere/a.wav", 100.5, 100.8, 0.9),  # overlaps cough 1: a true detection
        ("/elsewhere/a.wav", 105.0, 106.0, 0.8),  # 4 s after cough 1, no overlap: ignored
        ("/elsewhere/a.wav", 200.0, 201.0, 0.7),  # far from both: a false alarm
        ("/elsewhere/a.wav", 501.1, 501.5, 0.6),  # 0.1 s after cough 2: ignored, or a hit with 0.2 s tolerance
    ],
    columns=["file", "start", "end", "score"],
)


def _evaluate(detections=DETECTIONS, annotations=ANNOTATIONS, durations=None, **kw) -> dict:
    return evaluate_events(detections, annotations, durations=durations or {A: 1842.0}, **kw)


def test_counts_at_the_lowest_threshold_follow_the_definitions():
    m = _evaluate()
    assert m["threshold"] == 0.6  # every detection
    assert (m["annotated_events"], m["found"], m["sensitivity"]) == (2, 1, 0.5)
    assert (m["true_detections"], m["ignored_detections"], m["false_alarms"], m["detections"]) == (1, 2, 1, 4)
    assert m["hours"] == pytest.approx(1842 / 3600, abs=1e-6)
    assert m["hours_outside_ignore_zones"] == pytest.approx(0.5)
    assert m["false_alarms_per_hour"] == pytest.approx(2.0)  # 1 false alarm / 0.5 h
    assert m["precision"] == pytest.approx(0.5)  # 1 / (1 + 1): ignored detections count neither way


def test_tolerance_and_threshold():
    m = _evaluate(tolerance_s=0.2)
    assert (m["found"], m["true_detections"], m["false_alarms"], m["ignored_detections"]) == (2, 2, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3)
    m = _evaluate(threshold=0.75)
    assert (m["found"], m["false_alarms"], m["false_alarms_per_hour"], m["precision"]) == (1, 0, 0.0, 1.0)


def test_the_curve_and_the_sensitivity_at_fixed_false_alarm_rates():
    m = _evaluate(tolerance_s=0.2)
    curve = [(p["threshold"], p["sensitivity"], p["false_alarms_per_hour"]) for p in m["curve"]]
    assert curve == [(0.9, 0.5, 0.0), (0.8, 0.5, 0.0), (0.7, 0.5, 2.0), (0.6, 1.0, 2.0)]
    # the best point at each false-alarm rate: (0, 0.5), (2, 1.0); 1 FA/h lies half-way
    assert m["sensitivity_at_1_fa_per_hour"] == pytest.approx(0.75)
    assert m["sensitivity_at_2_fa_per_hour"] == pytest.approx(1.0)
    assert m["best_threshold_at_2_fa_per_hour"] == 0.6
    assert m["sensitivity_at_fa_per_hour"] == pytest.approx({"1": 0.75, "2": 1.0, "5": 1.0, "10": 1.0, "20": 1.0})
    assert len(_evaluate(thresholds=[0.5, 0.85])["curve"]) == 2


def test_false_alarm_files_rank_the_files_by_their_top_false_alarm():
    annotations = pd.concat([ANNOTATIONS, from_records([{"path": B, "label": "cough", "start": 30.0, "end": 30.5}])])
    detections = pd.concat([DETECTIONS, pd.DataFrame(
        [(B, 300.0, 300.5, 0.95), (B, 400.0, 400.5, 0.5), (B, 31.0, 31.5, 0.99)],  # 2 false alarms, 1 hit
        columns=["file", "start", "end", "score"],
    )])  # fmt: skip
    m = _evaluate(detections, annotations, durations={A: 1842.0, B: 1820.0}, threshold=0.6)
    assert m["false_alarm_files"] == [
        {"file": B, "top_score": 0.95, "false_alarms": 1},  # the 0.5 one lies below the threshold
        {"file": A, "top_score": 0.7, "false_alarms": 1},
    ]


def test_top_false_alarms_and_missed_events_at_the_threshold():
    m = _evaluate()
    assert m["top_false_alarms"] == [{"file": A, "start": 200.0, "end": 201.0, "score": 0.7}]
    assert m["missed_events"] == [{"file": A, "start": 500.0, "end": 501.0, "best": None}]  # 501.1 misses it
    m = _evaluate(threshold=0.95)
    assert m["top_false_alarms"] == []
    assert m["missed_events"] == [{"file": A, "start": 500.0, "end": 501.0, "best": None},
                                  {"file": A, "start": 100.0, "end": 101.0, "best": 0.9}]  # lowest best first
    assert _evaluate(tolerance_s=0.2)["missed_events"] == []


def test_review_sheets_show_each_false_alarm_and_missed_event(tmp_path, rng):
    path = str(tmp_path / "a.wav")
    audio.write_wav(path, 0.01 * rng.standard_normal(60 * 16000).astype("float32"), sr=16000)
    annotations = from_records([{"path": path, "label": "cough", "start": 5.0, "end": 6.0},
                                {"path": path, "label": "cough", "start": 50.0, "end": 51.0}])
    detections = pd.DataFrame([(path, 5.2, 5.6, 0.9), (path, 25.0, 25.5, 0.8), (path, 30.0, 30.4, 0.3),
                               (path, 50.2, 50.6, 0.4)], columns=["file", "start", "end", "score"])
    matched = match_detections(detections, annotations, durations={path: 60.0})
    page = write_review(matched, durations={path: 60.0}, out_dir=tmp_path / "review", threshold=0.5, ignore_around_s=10.0)
    text = page.read_text()
    # one false alarm at the threshold (25 s; 30 s scores under it), one missed event (50 s, best 0.4)
    assert "a.wav 25.00–25.50 s, score 0.800" in text and "a.wav 50.00–51.00 s, best 0.400" in text
    assert "30.00" not in text and "5.00–6.00" not in text
    assert sorted(p.name for p in page.parent.glob("*.png")) == ["false-alarm-01.png", "missed-01.png"]
    assert (page.parent / "missed-01.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_files_without_detections_count_their_hours_and_missed_events():
    annotations = pd.concat([ANNOTATIONS, from_records([
        {"path": B, "label": "cough", "start": 30.0, "end": 30.5},
        {"path": B, "label": "speech", "start": 1000.0, "end": 1010.0},  # not a cough: no event, no zone
    ])], ignore_index=True)  # fmt: skip
    # B: 1820 s with one zone [20, 40.5] -> 1799.5 s outside; with A, 3599.5 s
    m = _evaluate(annotations=annotations, durations={A: 1842.0, B: 1820.0})
    assert (m["files"], m["annotated_events"], m["found"]) == (2, 3, 1)
    assert m["sensitivity"] == pytest.approx(1 / 3)
    assert m["hours_outside_ignore_zones"] == pytest.approx(3599.5 / 3600)
    assert m["false_alarms_per_hour"] == pytest.approx(1 / (3599.5 / 3600))


def test_ignore_zones_are_clipped_to_the_file_and_merged():
    annotations = from_records([{"path": A, "label": "cough", "start": 2.0, "end": 3.0},
                                {"path": A, "label": "cough", "start": 8.0, "end": 9.0}])
    m = _evaluate(pd.DataFrame(columns=["file", "start", "end", "score"]), annotations, durations={A: 3600.0})
    # zones [0, 13] and [0, 19] -> [0, 19]
    assert m["hours_outside_ignore_zones"] == pytest.approx((3600 - 19) / 3600)
    assert (m["sensitivity"], m["detections"], m["precision"], m["sensitivity_at_1_fa_per_hour"]) == (0.0, 0, None, 0.0)


def test_detections_match_manifest_files_by_path_name_or_stem():
    annotations = from_records([{"path": A, "label": "cough", "start": 100.0, "end": 101.0}])
    for name in (A, "a.wav", "/other/a.flac", "a"):
        d = pd.DataFrame([(name, 100.2, 100.4, 0.9)], columns=["file", "start", "end", "score"])
        assert _evaluate(d, annotations)["found"] == 1, name
    d = pd.DataFrame([("zzz.wav", 100.2, 100.4, 0.9)], columns=["file", "start", "end", "score"])
    with pytest.raises(DataError, match="no detection file matches"):
        _evaluate(d, annotations)
    with pytest.raises(DataError, match="no duration"):
        _evaluate(durations={"/x.wav": 10.0})


def test_metrics_json_and_curve_png(tmp_path):
    json_path, png_path = write_event_metrics(_evaluate(), tmp_path)
    m = json.loads(json_path.read_text())
    for key in ("sensitivity", "precision", "false_alarms_per_hour", "threshold", "curve", "sensitivity_at_1_fa_per_hour",
                "sensitivity_at_2_fa_per_hour", "hours", "annotated_events", "detections"):
        assert key in m
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
