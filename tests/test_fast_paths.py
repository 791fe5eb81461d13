"""The detector's fast paths give the numbers of the plain ones: log-mels of overlapping windows
from one STFT, strips of windows scored together, the fused model copy, the vectorised noise floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import SR, tiny_members, tiny_meta

from respira.detect import DetectConfig, detect_array
from respira.detect.gate import GateState, frame_levels
from respira.features import FeatureConfig, features, log_mel
from respira.inference import Model, window_log_mels
from respira.testing import noise_bed, scene


def _bursty(n: int, *, seed: int) -> np.ndarray:
    """Noise with a loud tone burst and a stretch of digital silence (so that top_db clamps some windows)."""
    rng = np.random.default_rng(seed)
    y = (0.01 * rng.standard_normal(n)).astype(np.float32)
    t = np.arange(SR // 2) / SR
    y[n // 3: n // 3 + SR // 2] += 0.8 * np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    y[n // 2: n // 2 + SR] = 0.0
    return y


@pytest.mark.parametrize("cfg, hop, length", [
    (FeatureConfig(), 4000, 2 * SR),
    (FeatureConfig(n_fft=400, win_length=400, hop_length=100, top_db=None), 1000, SR + 30),
    (FeatureConfig(n_fft=511, win_length=400, n_mels=32, n_mfcc=13), 1600, SR // 2),
])
def test_window_log_mels_equal_each_window_alone(cfg, hop, length):
    n = 23
    y = torch.from_numpy(_bursty((n - 1) * hop + length, seed=1))
    alone = log_mel(torch.stack([y[k * hop: k * hop + length] for k in range(n)]), cfg)
    shared = window_log_mels(y, hop=hop, n=n, length=length, cfg=cfg)
    assert shared.shape == alone.shape
    torch.testing.assert_close(shared, alone, rtol=0, atol=1e-4)
    if cfg.top_db is not None:  # each window is clamped below its own maximum
        floors = alone.amin(dim=(1, 2))
        assert floors.max() - floors.min() > 20


@pytest.fixture(scope="module")
def tiny() -> Model:
    meta = tiny_meta()
    return Model(tiny_members(meta), meta, name="tiny")


@pytest.mark.parametrize("kind", ["logmel", "mfcc", "dual"])
def test_score_strip_equals_score_windows(kind):
    meta = tiny_meta(kind=kind)
    model = Model(tiny_members(meta), meta)
    hop, n = 4000, 11
    y = _bursty(5 * SR, seed=2)  # shorter than the windows reach: the last ones are zero-padded
    for length in (model.clip_samples, 2 * SR):
        padded = np.concatenate([y, np.zeros((n - 1) * hop + length, np.float32)])
        windows = np.stack([padded[k * hop: k * hop + length] for k in range(n)])
        expected = model.score_windows(windows)
        np.testing.assert_allclose(model.score_strip(y, hop=hop, n=n, length=length, batch_size=4), expected,
                                   rtol=0, atol=1e-6)
    assert np.ptp(expected[:, 1]) > 0.01  # the windows really score differently


def test_the_fused_model_copy_matches_the_members_and_leaves_them_alone(tiny):
    (member,) = tiny.ensemble.members
    before = {k: v.clone() for k, v in member.state_dict().items()}
    waves = np.stack([_bursty(SR, seed=s) for s in range(4)])
    with torch.no_grad():
        expected = torch.softmax(member(features(waves, tiny.feature_config)), dim=-1).numpy()
    np.testing.assert_allclose(tiny.score_windows(waves), expected, rtol=0, atol=1e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in member.modules())
    assert all(torch.equal(before[k], v) for k, v in member.state_dict().items())


def test_noise_floor_is_the_percentile_of_the_last_span_up_to_each_step_end():
    cfg = DetectConfig(gate_floor_s=3.0, gate_floor_step_s=0.5)
    rng = np.random.default_rng(3)
    y = np.concatenate([noise_bed(sample_rate=SR, rng=rng, duration_s=d, level_db=db) for d, db in [(4.1, -60), (3.3, -30), (2.9, -50)]])
    state, parts = GateState(), []
    for i in range(0, len(y), 7777):  # blocks that cut through frames and floor steps
        parts.append(frame_levels(y[i: i + 7777], sample_rate=SR, state=state, cfg=cfg))
    parts.append(frame_levels(np.zeros(0, np.float32), sample_rate=SR, state=state, cfg=cfg, final=True))
    db, floor = np.concatenate([p.db for p in parts]), np.concatenate([p.floor for p in parts])
    step, span = 25, 150  # frames of 20 ms
    ends = np.minimum((np.arange(len(db)) // step + 1) * step, len(db))
    expected = [np.percentile(db[max(0, e - span): e].astype(np.float64), cfg.gate_percentile) for e in ends]
    np.testing.assert_allclose(floor, np.float32(expected), rtol=0, atol=1e-4)
    assert len(db) == len(y) // (SR // 50) and np.ptp(floor) > 20


class _WindowsOnly:
    """A model seen through score_windows alone (no score_strip)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.sample_rate, self.clip_s = model.sample_rate, model.clip_s
        self.classes, self.positive = model.classes, model.positive

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        return self.model.score_windows(windows)


def test_the_detector_scores_strips_as_it_scores_single_windows(tiny):
    y, _ = scene(duration_s=40.0, events={"cough": 4, "speech": 2}, seed=4)
    cfg = DetectConfig(threshold=0.0, candidate_floor=0.0)
    strips = detect_array(y, tiny, cfg)
    single = detect_array(y, _WindowsOnly(tiny), cfg)
    assert np.count_nonzero(strips.scores) > 20
    np.testing.assert_allclose(strips.scores.astype(np.float32), single.scores.astype(np.float32), rtol=0, atol=1e-3)
    assert [(e.start, e.end) for e in strips.events] == [(e.start, e.end) for e in single.events]
    np.testing.assert_allclose([e.score for e in strips.events], [e.score for e in single.events], rtol=0, atol=1e-6)


def test_an_ensemble_s_first_member_screens_the_windows_the_whole_ensemble_scores():
    meta = tiny_meta()
    pair = Model(tiny_members(meta, n=2), meta)
    first = Model(tiny_members(meta, n=2)[:1], meta)
    y, _ = scene(duration_s=30.0, events={"cough": 3, "speech": 2}, seed=5)
    loose = DetectConfig(threshold=0.0, candidate_floor=0.0, screen=0.0)
    full = detect_array(y, _WindowsOnly(pair), loose).scores.astype(np.float32)  # every window, both members
    alone = detect_array(y, first, loose).scores.astype(np.float32)
    np.testing.assert_allclose(detect_array(y, pair, loose).scores.astype(np.float32), full, rtol=0, atol=1e-3)
    scored = alone > 0
    values = np.unique(alone[scored])
    screen = float(values[len(values) // 2: len(values) // 2 + 2].mean())  # between two scores, clear of float16 rounding
    screened = detect_array(y, pair, DetectConfig(threshold=0.0, candidate_floor=0.0, screen=screen)).scores.astype(np.float32)
    picked = alone >= screen
    assert 5 < picked.sum() < scored.sum() and np.abs(full - alone)[scored].max() > 0.01  # the members differ
    np.testing.assert_allclose(screened[picked], full[picked], rtol=0, atol=1e-3)
    np.testing.assert_allclose(screened[~picked], alone[~picked], rtol=0, atol=1e-3)
    assert first.screener is None and pair.screener is not None
