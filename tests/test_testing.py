"""respira.testing: planted sounds are where it says, with the character it promises, per seed."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from respira import testing

SR = 16000


def rms_db(y: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(y, np.float64) ** 2) + 1e-20)


def frame_rms_db(y: np.ndarray, frame: int = 320) -> np.ndarray:
    n = len(y) // frame
    return 10 * np.log10(np.mean(y[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1) + 1e-20)


def spectrum(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(y), 1 / SR), np.abs(np.fft.rfft(y)) ** 2


def test_scene_plants_each_event_at_its_reported_extent_and_nothing_elsewhere():
    counts = {"cough": 3, "crackle": 2, "wheeze": 2, "speech": 1}
    y, events = testing.scene(duration_s=30.0, events=counts, bed_db=-50.0, event_db=-12.0, seed=4, min_gap_s=1.0)
    assert y.dtype == np.float32 and len(y) == 30 * SR and np.abs(y).max() < 1.0
    assert {label: sum(e.label == label for e in events) for label in counts} == counts
    assert [e.start for e in events] == sorted(e.start for e in events)
    assert events[0].start >= 0.5 and events[-1].end <= 29.5
    for a, b in zip(events, events[1:]):
        assert b.start - a.end >= 1.0 - 1e-9
    bed = rms_db(y[: int(events[0].start * SR) - 400])
    assert abs(bed - -50.0) < 1.5
    for e in events:
        s, t = int(round(e.start * SR)), int(round(e.end * SR))
        assert rms_db(y[s:t]) > bed + 15, e  # the sound fills its extent
        assert rms_db(y[s - 320 : s]) < bed + 6, e  # and starts where reported
        assert rms_db(y[t : t + 320]) < bed + 6, e  # and ends where reported
    quiet = np.ones(len(y), bool)
    for e in events:
        quiet[int(e.start * SR) : int(np.ceil(e.end * SR))] = False
    frames = frame_rms_db(np.where(quiet, y, 0.0))
    covered = frame_rms_db(quiet.astype(np.float32)) > -1  # frames entirely outside events
    assert frames[covered].max() < bed + 6


def test_scene_levels_and_errors():
    y, events = testing.scene(duration_s=10.0, events={"wheeze": 1}, event_db=-6.0, seed=1)
    (e,) = events
    peak = np.abs(y[int(e.start * SR) : int(e.end * SR)]).max()
    assert 20 * np.log10(peak) == pytest.approx(-6.0, abs=0.3)
    y, events = testing.scene(duration_s=5.0, events=None, bed_db=-40.0, seed=1)
    assert events == [] and rms_db(y) == pytest.approx(-40.0, abs=0.1)
    with pytest.raises(ValueError, match="sneeze"):
        testing.scene(duration_s=5.0, events={"sneeze": 1})
    with pytest.raises(ValueError, match="do not fit"):
        testing.scene(duration_s=3.0, events={"cough": 5})


def test_scene_is_deterministic_per_seed():
    a = testing.scene(duration_s=8.0, events={"cough": 2, "speech": 1}, seed=7)
    b = testing.scene(duration_s=8.0, events={"cough": 2, "speech": 1}, seed=7)
    c = testing.scene(duration_s=8.0, events={"cough": 2, "speech": 1}, seed=8)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0]) and a[1] != c[1]


def test_night_blocks_concatenate_to_the_same_night_whatever_the_block_size():
    hours, per_hour = 0.05, 100  # 3 minutes, 5 coughs
    fine = list(testing.night(hours=hours, coughs_per_hour=per_hour, seed=5, block_s=0.5))
    coarse = list(testing.night(hours=hours, coughs_per_hour=per_hour, seed=5, block_s=60.0))
    y = np.concatenate([b for b, _ in fine])
    assert len(y) == 180 * SR and all(len(b) == SR // 2 for b, _ in fine)
    assert np.array_equal(y, np.concatenate([b for b, _ in coarse]))
    events = [e for _, block_events in fine for e in block_events]
    assert events == [e for _, block_events in coarse for e in block_events]
    assert len(events) == 5 and all(e.label == "cough" for e in events)
    for i, (_, block_events) in enumerate(fine):  # each event is reported by the block it starts in
        assert all(i * 0.5 <= e.start < (i + 1) * 0.5 for e in block_events)
    assert any(int(e.start / 0.5) != int(e.end / 0.5) for e in events)  # some cough spans two blocks
    bed = rms_db(y[: int(events[0].start * SR) - 1000])
    assert abs(bed - -50.0) < 1.5
    for e in events:
        assert 0.25 <= e.end - e.start <= 0.6
        assert rms_db(y[int(e.start * SR) : int(e.end * SR)]) > bed + 10
    other = list(testing.night(hours=hours, coughs_per_hour=per_hour, seed=6, block_s=60.0))
    assert [e for _, ev in other for e in ev] != events


def test_night_count_follows_the_rate():
    events = [e for _, ev in testing.night(hours=0.2, coughs_per_hour=30, seed=0, block_s=120.0) for e in ev]
    assert len(events) == 6
    assert all(b.start - a.end >= 2.0 for a, b in zip(events, events[1:]))


def test_write_night_streams_a_16_bit_wav(tmp_path):
    path = tmp_path / "night.wav"
    events = testing.write_night(path, hours=0.02, coughs_per_hour=150, seed=2)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", int(0.02 * 3600 * SR))
    expected = np.concatenate([b for b, _ in testing.night(hours=0.02, coughs_per_hour=150, seed=2)])
    y, _ = sf.read(path, dtype="float32")
    assert np.abs(y - expected).max() <= 1 / 32768 + 1e-7
    assert events == [e for _, ev in testing.night(hours=0.02, coughs_per_hour=150, seed=2) for e in ev]
    assert len(events) == 3


@pytest.mark.parametrize("seed", range(5))
def test_wheeze_is_tonal_between_100_and_1000_hz(seed):
    y = testing.wheeze(sample_rate=SR, rng=np.random.default_rng(seed), duration_s=0.5)
    assert len(y) == SR // 2 and y.dtype == np.float32 and np.abs(y).max() == pytest.approx(1.0)
    f, p = spectrum(y)
    assert 100 <= f[p.argmax()] <= 1000
    peak_band = p[np.abs(f - f[p.argmax()]) < 20].sum()
    assert peak_band / p.sum() > 0.5  # tonal: most energy in one narrow band


def test_wheeze_must_last_more_than_100_ms():
    with pytest.raises(ValueError, match="0.1"):
        testing.wheeze(rng=np.random.default_rng(0), duration_s=0.05)


def test_crackles_are_short_broadband_transients():
    lengths = []
    for seed in range(20):
        y = testing.crackle(sample_rate=SR, rng=np.random.default_rng(seed))
        lengths.append(len(y) / SR)
        assert 0.005 <= len(y) / SR <= 0.020
        f, p = spectrum(np.pad(y, (0, 1024)))
        assert p[f > 1000].sum() / p.sum() > 0.2 and p[f < 1000].sum() / p.sum() > 0.05  # broadband
    assert max(lengths) - min(lengths) > 0.005  # durations vary with the generator


def test_cough_has_an_explosive_broadband_onset_then_a_weaker_tail():
    lengths = set()
    for seed in range(10):
        y = testing.cough(sample_rate=SR, rng=np.random.default_rng(seed))
        lengths.add(len(y))
        assert 0.25 <= len(y) / SR <= 0.6
        env = np.abs(y)
        first_loud = np.argmax(env > 0.5 * env.max()) / SR
        assert first_loud < 0.015  # fast attack
        frames = frame_rms_db(y, frame=160)
        assert frames.argmax() * 0.01 < 0.08
        assert frames[-5:].mean() < frames.max() - 10  # decays
        f, p = spectrum(y[: int(0.05 * SR)])
        assert p[f > 2000].sum() / p.sum() > 0.1  # broadband burst
    assert len(lengths) == 10


@pytest.mark.parametrize("seed", range(4))
def test_babble_is_voiced_at_speech_pitch_with_syllable_rate_modulation(seed):
    y = testing.babble(sample_rate=SR, rng=np.random.default_rng(seed), duration_s=4.0).astype(np.float64)
    assert len(y) == 4 * SR
    env = np.sqrt(np.mean(y.reshape(-1, 160) ** 2, axis=1))  # 100 Hz envelope
    f, p = np.fft.rfftfreq(len(env), 0.01), np.abs(np.fft.rfft(env - env.mean())) ** 2
    assert 2.5 <= f[p.argmax()] <= 7.0
    centre = int(np.argmax(env)) * 160
    loud = y[max(centre - 800, 0) : centre + 800]
    ac = np.correlate(loud, loud, "full")[len(loud) - 1 :]
    lag = SR // 400 + np.argmax(ac[SR // 400 : SR // 60])  # search 60-400 Hz
    assert 85 <= SR / lag <= 260


@pytest.mark.parametrize(("color", "tilt_db"), [("white", 12.0), ("pink", 0.0), ("brown", -12.0)])
def test_noise_bed_level_and_color(color, tilt_db):
    y = testing.noise_bed(sample_rate=SR, rng=np.random.default_rng(0), duration_s=4.0, level_db=-37.0, color=color)
    assert y.dtype == np.float32 and len(y) == 4 * SR
    assert rms_db(y) == pytest.approx(-37.0, abs=0.05)
    f, p = spectrum(y)
    low, high = p[(f >= 200) & (f < 400)].sum(), p[(f >= 3200) & (f < 6400)].sum()
    assert 10 * np.log10(high / low) == pytest.approx(tilt_db, abs=2.0)
    with pytest.raises(ValueError, match="pink"):
        testing.noise_bed(rng=np.random.default_rng(0), duration_s=1.0, color="blue")


def test_clip_dataset_writes_wavs_and_a_manifest(tmp_path):
    manifest = testing.clip_dataset(tmp_path / "clips", per_class=6, duration_s=1.5, seed=1, subjects=3)
    assert manifest == tmp_path / "clips" / "manifest.csv"
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["path", "label", "start", "end", "subject", "split", "source_label"]
    assert len(rows) == 18 and {r["label"] for r in rows} == {"cough", "speech", "wheeze"}
    assert {r["subject"] for r in rows} == {"s00", "s01", "s02"}
    for r in rows:
        assert r["start"] == r["end"] == r["split"] == "" and r["source_label"] == r["label"]
        assert r["path"].startswith(r["label"] + "/") and r["path"].endswith(".wav")
        info = sf.info(manifest.parent / r["path"])
        assert (info.samplerate, info.subtype, info.frames) == (SR, "PCM_16", int(1.5 * SR))
        y, _ = sf.read(manifest.parent / r["path"])
        assert frame_rms_db(y).max() > frame_rms_db(y).min() + 20  # a sound over the bed
    again = testing.clip_dataset(tmp_path / "again", per_class=6, duration_s=1.5, seed=1, subjects=3)
    assert np.array_equal(sf.read(manifest.parent / rows[4]["path"])[0], sf.read(again.parent / rows[4]["path"])[0])
    with pytest.raises(ValueError, match="snore"):
        testing.clip_dataset(tmp_path / "bad", classes=("snore",))


def test_clip_dataset_classes_are_separable_across_subjects(tmp_path):
    """A nearest-centroid classifier on band energies of the loudest frames tells the classes apart."""
    manifest = testing.clip_dataset(tmp_path, per_class=20, duration_s=2.0, seed=0, subjects=10)
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    edges = np.geomspace(80, 7900, 17)
    feats = []
    for r in rows:
        y, _ = sf.read(tmp_path / r["path"])
        frames = y[: len(y) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        loud = power[np.argsort(power.sum(axis=1))[-10:]]
        f = np.fft.rfftfreq(512, 1 / SR)
        bands = np.array([loud[:, (f >= lo) & (f < hi)].sum(axis=1) for lo, hi in zip(edges, edges[1:])]).T
        db = 10 * np.log10(bands + 1e-12)
        feats.append(np.concatenate([(db - db.max(axis=1, keepdims=True)).mean(axis=0), db.std(axis=0)]))
    x, labels = np.array(feats), np.array([r["label"] for r in rows])
    train = np.array([int(r["subject"][1:]) < 7 for r in rows])
    centroids = {c: x[train & (labels == c)].mean(axis=0) for c in set(labels)}
    predicted = [min(centroids, key=lambda c: np.linalg.norm(v - centroids[c])) for v in x[~train]]
    assert np.mean(np.array(predicted) == labels[~train]) >= 0.9
