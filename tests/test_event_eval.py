"""Event evaluation on hand-made detections and annotations, against numbers worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from respira.data.manifest import from_records
from respira import audio
from respira.detect.event_metrics import evaluate_events, match_detections, write_event_metrics
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
    audio.write_wav(path, 0.01 * rng.standard_normal(60 * 16000).astype("float32"), sample_rate=16000)
    annotations = from_records([{"path": path, "label": "cough", "start": 5.0, "end": 6.0},
                                {"path": path, "label": "cough", "start": 50.0, "end": 51.0}])
    detections = pd.DataFrame([(path, 5.2, 5.6, 0.9), (path, 25.0, 25.5, 0.8), (path, 30.0, 30.4, 0.3),
                               (path, 50.2, 50.6, 0.4)], columns=["file", "start", "end", "score"])
    matched = match_detections(detections, annotations, durations={path: 60.0})
    page = write_review(matched, durations={path: 60.0}, out=tmp_path / "review", threshold=0.5)
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


# Two calls split into their sides. Callers: c1 1821 s with a cough at [100, 101] (zone [90, 111],
# 1800 s = 0.5 h outside), c2 921 s with a cough at [50, 51] (900 s = 0.25 h outside). Operators
# (no events, so negatives): c1 1800 s = 0.5 h, c2 900 s = 0.25 h. Caller and operator files share
# their names: detections name them by path.
C1, C2, O1, O2 = "/sides/caller/c1.flac", "/sides/caller/c2.flac", "/sides/operator/c1.flac", "/sides/operator/c2.flac"
SIDES = from_records([
    {"path": C1, "label": "cough", "start": 100.0, "end": 101.0, "subject": "c1", "side": "caller"},
    {"path": C2, "label": "cough", "start": 50.0, "end": 51.0, "subject": "c2", "side": "caller"},
    {"path": O1, "label": "speech", "subject": "c1", "side": "operator"},
    {"path": O2, "label": "speech", "subject": "c2", "side": "operator"},
])  # fmt: skip
SIDE_SECONDS = {C1: 1821.0, C2: 921.0, O1: 1800.0, O2: 900.0}
SIDE_DETECTIONS = pd.DataFrame(
    [
        (C1, 100.2, 100.6, 0.9),  # hit
        (C1, 105.0, 105.5, 0.85),  # inside c1's zone: ignored
        (C1, 300.0, 300.5, 0.6),  # a caller false alarm
        (C2, 50.2, 50.5, 0.5),  # hit
        (O1, 100.2, 100.6, 0.8),  # where c1's caller coughs, but on a negative file: a false alarm
        (O1, 5.0, 5.5, 0.7),  # a false alarm
        (O2, 50.3, 50.6, 0.4),  # a false alarm
    ],
    columns=["file", "start", "end", "score"],
)


def _sides(group_by: str | None = "side", **kw) -> dict:
    return evaluate_events(SIDE_DETECTIONS, SIDES, durations=SIDE_SECONDS, group_by=group_by, **kw)


def test_detections_on_negative_files_are_false_alarms_over_the_whole_file():
    m = _sides()
    assert m["threshold"] == 0.4
    assert (m["negative_files"], m["hours_of_negatives"], m["false_alarms_of_negatives"]) == (2, 0.75, 3)
    assert m["false_alarms_per_hour_of_negatives"] == pytest.approx(4.0)  # 3 / 0.75 h
    caller, operator = m["groups"]["caller"], m["groups"]["operator"]
    assert operator == {
        "files": 2, "hours": 0.75, "hours_outside_ignore_zones": 0.75, "annotated_events": 0, "found": 0,
        "sensitivity": None, "detections": 3, "true_detections": 0, "ignored_detections": 0, "false_alarms": 3,
        "false_alarms_per_hour": 4.0, "false_alarms_per_hour_curve": [0.0, 0.0, 1.333333, 2.666667, 2.666667, 2.666667, 4.0],
    }  # fmt: skip
    assert (caller["files"], caller["annotated_events"], caller["found"], caller["sensitivity"]) == (2, 2, 2, 1.0)
    assert (caller["hours"], caller["hours_outside_ignore_zones"]) == (round(2742 / 3600, 6), 0.75)
    counts = ("detections", "true_detections", "ignored_detections", "false_alarms")
    assert [caller[k] for k in counts] == [4, 2, 1, 1]
    assert caller["false_alarms_per_hour"] == pytest.approx(1.333333)  # 1 / 0.75 h
    assert caller["false_alarms_per_hour_curve"] == [0.0, 0.0, 0.0, 0.0, 1.333333, 1.333333, 1.333333]
    at = _sides(threshold=0.65)["groups"]  # caller 0.6 drops out; operator 0.8 and 0.7 stay
    assert (at["caller"]["false_alarms_per_hour"], at["operator"]["false_alarms_per_hour"]) == (0.0, 2.666667)


def test_the_groups_add_up_to_the_totals():
    m = _sides()
    groups = m["groups"].values()
    assert (m["false_alarms"], m["false_alarms_per_hour"]) == (4, pytest.approx(4 / 1.5))  # 1 + 3 in 0.75 + 0.75 h
    for key in ("files", "annotated_events", "found", "detections", "true_detections", "ignored_detections", "false_alarms"):
        assert sum(g[key] for g in groups) == m[key], key
    assert sum(g["hours"] for g in groups) == pytest.approx(m["hours"], abs=2e-6) == 5442 / 3600
    assert sum(g["hours_outside_ignore_zones"] for g in groups) == pytest.approx(m["hours_outside_ignore_zones"]) == 1.5
    curve = [p["false_alarms_per_hour"] * 1.5 for p in m["curve"]]
    summed = [sum(g["false_alarms_per_hour_curve"][i] * 0.75 for g in groups) for i in range(len(curve))]  # 0.75 h each
    assert summed == pytest.approx(curve, abs=1e-5)


def test_sensitivity_at_false_alarms_per_hour_of_negatives():
    m = _sides()
    assert [p["sensitivity"] for p in m["curve"]] == [0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0]  # thresholds 0.9 ... 0.4
    assert m["false_alarms_per_hour_of_negatives_curve"] == m["groups"]["operator"]["false_alarms_per_hour_curve"]
    # the best point per negative false-alarm rate: (0, 0.5), (1.33, 0.5), (2.67, 1.0), (4, 1.0);
    # 2 FA/h lies half-way between 1.33 and 2.67: 0.75
    assert m["sensitivity_at_fa_per_hour_of_negatives"] == pytest.approx({"1": 0.5, "2": 0.75, "5": 1.0, "10": 1.0})
    assert m["sensitivity_at_fa_per_hour"]["2"] == 1.0  # against every false alarm: 0.6 is reached at 2 FA/h


def test_without_negative_files_or_groups_the_new_figures_are_empty():
    m = _evaluate()
    assert (m["negative_files"], m["hours_of_negatives"], m["false_alarms_per_hour_of_negatives"]) == (0, 0.0, None)
    assert m["sensitivity_at_fa_per_hour_of_negatives"] == {"1": None, "2": None, "5": None, "10": None}
    assert (m["group_by"], m["groups"]) == (None, {})


def test_grouping_needs_a_column_that_each_file_has_one_value_of():
    with pytest.raises(DataError, match=r"cannot group by 'room': the manifest has no such column \(columns: path, label, "):
        _sides(group_by="room")
    split = pd.concat([SIDES, from_records([{"path": C1, "label": "speech", "side": "operator"}])], ignore_index=True)
    with pytest.raises(DataError, match="c1.flac has rows with 'caller' and 'operator'"):
        evaluate_events(SIDE_DETECTIONS, split, durations=SIDE_SECONDS, group_by="side")


def test_files_of_the_same_name_match_by_their_folder():
    moved = SIDE_DETECTIONS.assign(file=SIDE_DETECTIONS["file"].str.replace("/sides/", "/elsewhere/"))
    m = evaluate_events(moved, SIDES, durations=SIDE_SECONDS)
    assert (m["unmatched_detection_files"], m["false_alarms_of_negatives"], m["found"]) == ([], 3, 2)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from respira.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_writes_groups_and_the_figures_of_the_negatives(tmp_path, capsys):
    for path, seconds in SIDE_SECONDS.items():  # silent files at 100 Hz: the durations are all that counts
        (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        audio.write_wav(tmp_path / path.lstrip("/"), np.zeros(int(seconds * 100), "float32"), sample_rate=100)
    manifest, events = tmp_path / "calls.csv", tmp_path / "events.csv"
    SIDES.assign(path=[p.lstrip("/") for p in SIDES["path"]]).to_csv(manifest, index=False)
    files = [str(tmp_path / f.lstrip("/")) for f in SIDE_DETECTIONS["file"]]
    SIDE_DETECTIONS.assign(file=files, label="cough").to_csv(events, index=False)
    code, stdout, _ = _cli(capsys, "evaluate-events", str(events), str(manifest), "-o", str(tmp_path / "ev"))
    assert code == 0 and "side operator: 2 file(s)" in stdout and "2 FA/h 0.750" in stdout
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["group_by"] == "side" and set(m["groups"]) == {"caller", "operator"}  # side by default
    assert m["groups"]["operator"]["false_alarms_per_hour"] == 4.0 and m["hours_of_negatives"] == 0.75
    assert m["sensitivity_at_fa_per_hour_of_negatives"] == pytest.approx({"1": 0.5, "2": 0.75, "5": 1.0, "10": 1.0})
    assert (tmp_path / "ev" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = ("evaluate-events", str(events), str(manifest), "-o", str(tmp_path / "ev2"), "--group-by")
    code, _, _ = _cli(capsys, *args, "subject")
    assert code == 0 and set(json.loads((tmp_path / "ev2" / "metrics.json").read_text())["groups"]) == {"c1", "c2"}
    code, _, err = _cli(capsys, *args, "room")
    assert code == 2 and "cannot group by 'room'" in err and "side" in err and "Traceback" not in err
