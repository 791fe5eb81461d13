"""Constructed nights (respira.testing.mix_night, benchmarks/nights.py): every planted sound is where
the truth says, at the level and spacing asked for, the same for the same seed; and the benchmark's
scoring attributes false alarms and counts coughs as documented."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from respira import testing

SR = 16000
MIX = testing.NightMix(bed_db=(-58.0, -48.0), drift_s=20.0, level_db=(-30.0, -10.0), gap_s=(2.0, 5.0))
SILENT_BED = dataclasses.replace(MIX, bed_db=(-150.0, -150.0))


def level_db(y: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-20)


def clips(seed: int) -> list[np.ndarray]:
    """Synthetic sounds with silence and faint noise around them, trimmed as the benchmark trims real clips."""
    rng = np.random.default_rng(seed)
    makers = [lambda: testing.cough(rng=rng), lambda: testing.babble(rng=rng, duration_s=rng.uniform(1.0, 3.0)),
              lambda: testing.wheeze(rng=rng, duration_s=0.5)]
    out = []
    for i in range(12):
        sound = makers[i % 3]()
        pad = testing.noise_bed(rng=rng, duration_s=1.0, level_db=-80.0)
        y = np.concatenate([pad, sound, pad])
        a, b = testing.sound_extent(y, sample_rate=SR)
        out.append(y[a:b])
    return out


def night(seed: int, *, duration: float = 60.0, mix: testing.NightMix = MIX) -> tuple[np.ndarray, list[testing.Placed]]:
    return testing.mix_night(iter(clips(0)), duration_s=duration, sample_rate=SR, rng=np.random.default_rng(seed), mix=mix)


def test_sound_extent_is_where_the_sound_is():
    rng = np.random.default_rng(3)
    sound = testing.cough(rng=rng)
    y = np.concatenate([np.zeros(8000, np.float32), testing.noise_bed(rng=rng, duration_s=0.5, level_db=-90.0),
                        sound, np.zeros(4000, np.float32)])
    a, b = testing.sound_extent(y, sample_rate=SR)
    start, end = 8000 + 8000, 16000 + len(sound)
    assert start - 160 <= a <= start + 160 and end - 0.2 * len(sound) <= b <= end
    assert testing.sound_extent(np.zeros(100, np.float32), sample_rate=SR) == (0, 0)


def frame_levels(y: np.ndarray, frame: int = 160) -> np.ndarray:
    """dBFS of each whole 10-ms frame of y."""
    n = len(y) // frame
    return 10 * np.log10(np.mean(np.square(y[: n * frame], dtype=np.float64).reshape(n, frame), axis=1) + 1e-20)


def test_planted_sounds_are_where_the_truth_says_and_nowhere_else():
    y, placed = night(1)
    y0, placed0 = night(1, mix=SILENT_BED)  # the same night without its bed: the planted sounds alone
    assert y.dtype == np.float32 and len(y) == 60 * SR and placed0 == placed
    assert len(placed) >= 8 and [p.index for p in placed] == list(range(len(placed)))
    inside = np.zeros(len(y), bool)
    for p in placed:
        s, t = int(round(p.start * SR)), int(round(p.end * SR))
        inside[s:t] = True
        sound = frame_levels(y0[s:t])
        assert min(sound[0], sound[-1]) > sound.max() - 35, p  # the sound reaches its ends (trimmed, 10-ms fades)
        around = max(level_db(y[s - 1600 : s]), level_db(y[t : t + 1600]))
        assert frame_levels(y[s:t]).max() > around + 10, p  # and stands out of the bed
    assert np.abs(y0[~inside]).max() < 1e-6  # no sound outside the truth
    outside = frame_levels(np.where(inside, 0.0, y))[frame_levels(inside.astype(np.float32)) < -100]
    assert outside.max() < MIX.bed_db[1] + 3  # only the bed


def test_levels_gaps_and_bed_are_as_specified():
    y, placed = night(2, duration=120.0)
    y0, placed0 = night(2, duration=120.0, mix=SILENT_BED)
    assert placed0 == placed  # the bed's level changes nothing else
    for p in placed:
        peak = np.abs(y0[int(round(p.start * SR)) : int(round(p.end * SR))]).max()
        assert MIX.level_db[0] <= p.peak_db <= MIX.level_db[1]
        assert 20 * np.log10(peak) == pytest.approx(p.peak_db, abs=0.01)
    assert max(p.peak_db for p in placed) - min(p.peak_db for p in placed) > 10  # random levels
    starts, ends = np.array([p.start for p in placed]), np.array([p.end for p in placed])
    gaps = np.concatenate([[starts[0]], starts[1:] - ends[:-1]])
    assert gaps.min() >= MIX.gap_s[0] - 1e-3 and gaps.max() <= MIX.gap_s[1] + 1e-3
    assert 120.0 - ends[-1] >= MIX.gap_s[0]  # the sound that would not fit is left out
    bed = [level_db(y[int(round((a + 0.1) * SR)) : int(round((b - 0.1) * SR))]) for a, b in zip(ends[:-1], starts[1:])]
    assert MIX.bed_db[0] - 1.5 <= min(bed) and max(bed) <= MIX.bed_db[1] + 1.5
    assert max(bed) - min(bed) > 3  # the bed drifts


def test_a_night_is_the_same_for_the_same_seed():
    a, b, c = night(5), night(5), night(6)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0]) and a[1] != c[1]


def test_silent_sounds_are_refused():
    with pytest.raises(ValueError, match="silent"):
        testing.mix_night(iter([np.zeros(800, np.float32)]), duration_s=10.0, rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "nights.py"
    spec = importlib.util.spec_from_file_location("nights_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_false_alarms_go_to_the_sound_they_overlap_most(bench):
    truth = pd.DataFrame({"file": ["n"] * 3, "start": [10.0, 20.0, 30.0], "end": [11.0, 25.0, 31.0],
                          "label": ["cough", "speech", "laugh"]})
    false_alarms = pd.DataFrame({"file": ["n"] * 4, "start": [19.5, 24.5, 30.9, 50.0], "end": [20.5, 26.0, 31.5, 50.4]})
    assert bench.by_class(false_alarms, truth) == {"speech": 2, "bed": 1, "laugh": 1}


def test_threshold_at_a_false_alarm_rate_is_the_lowest_that_keeps_to_it(bench):
    detections = pd.DataFrame({"score": [0.9, 0.8, 0.7, 0.6, 0.5], "kind": ["hit", "false_alarm", "hit", "false_alarm", "hit"]})
    assert bench.threshold_at(detections, fa_per_hour=1.0, hours=1.0) == 0.7  # one false alarm (0.8) allowed
    assert bench.threshold_at(detections, fa_per_hour=1.0, hours=0.5) == 0.9
    assert bench.threshold_at(detections, fa_per_hour=2.0, hours=1.0) == 0.5


def test_count_error_per_ten_minutes(bench):
    truth = pd.DataFrame({"file": "n", "start": [10.0, 100.0, 700.0], "end": [11.0, 101.0, 701.0], "label": "cough",
                          "dataset": "d"})
    events = pd.DataFrame({"file": "n", "start": [10.1, 10.6, 300.0, 700.2], "end": [10.4, 10.9, 300.3, 700.5]})
    error = bench.count_error(truth, events, durations={"n": 900.0})  # segments 0-600 s and 600-900 s (x2)
    assert error["segments"] == 2 and error["planted_mean"] == 2.0  # (2 + 2 * 1) / 2
    assert error["detected_mean"] == 2.5 and error["mean_error"] == 0.5 and error["mean_abs_error"] == 0.5
    assert error["per_clip"] == {"detected_mean": 2.0, "mean_error": 0.0, "mean_abs_error": 0.0}  # two events on one cough
    assert error["events_per_found_cough"] == {"d": 1.5}
