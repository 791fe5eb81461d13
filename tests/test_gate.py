"""The energy gate: closed on silence and steady noise, open (padded) on bursts, adaptive, streaming."""

from __future__ import annotations

import numpy as np
import pytest
from detect_stub import PlantedScorer

from respira.detect import DetectConfig, detect_array
from respira.detect.gate import ActiveTime, GateState, frame_levels, frame_samples, loud
from respira.testing import cough, night, noise_bed

SR = 16000
CFG = DetectConfig()


def _regions(y: np.ndarray, *, block_s: float, cfg: DetectConfig = CFG) -> list[tuple[float, float]]:
    """The gate's open regions over y fed in blocks of block_s."""
    state, active = GateState(), ActiveTime(frame_s=frame_samples(sample_rate=SR, cfg=cfg) / SR, pad_s=cfg.gate_pad_s)
    size = round(block_s * SR)
    blocks = [y[i: i + size] for i in range(0, len(y), size)]
    for i, block in enumerate(blocks):
        active.add(loud(frame_levels(block, sample_rate=SR, state=state, cfg=cfg, final=i == len(blocks) - 1), cfg=cfg))
    return active.regions()


def _with_coughs(times: list[float], *, duration: float, seed: int = 0, peak_db: float = -14.0):
    rng = np.random.default_rng(seed)
    y = noise_bed(sample_rate=SR, rng=rng, duration_s=duration, level_db=-50.0).astype(np.float64)
    spans = []
    for t in times:
        c = cough(sample_rate=SR, rng=rng) * 10 ** (peak_db / 20)
        s = round(t * SR)
        y[s: s + len(c)] += c
        spans.append((t, t + len(c) / SR))
    return y.astype(np.float32), spans


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_gate_stays_closed_on_steady_noise(color):
    y = noise_bed(sample_rate=SR, rng=np.random.default_rng(1), duration_s=60.0, level_db=-25.0, color=color)
    assert _regions(y, block_s=7.0) == []


def test_gate_stays_closed_on_digital_silence_and_sounds_below_the_absolute_minimum():
    y = np.zeros(20 * SR, np.float32)
    y[10 * SR: 10 * SR + 800] = 10 ** (-85 / 20)  # 50 ms at -85 dBFS over digital silence: below gate_min_dbfs
    assert _regions(y, block_s=5.0) == []
    y[15 * SR: 15 * SR + 800] = 10 ** (-40 / 20)  # -40 dBFS is above it
    (a, b), = _regions(y, block_s=5.0)
    assert a == pytest.approx(15.0 - CFG.gate_pad_s, abs=0.021) and b == pytest.approx(15.05 + CFG.gate_pad_s, abs=0.021)


def test_gate_opens_on_each_cough_padded_on_both_sides():
    y, spans = _with_coughs([5.0, 20.0, 41.3], duration=50.0)
    regions = _regions(y, block_s=60.0)
    assert len(regions) == 3
    for (a, b), (s, e) in zip(regions, spans):
        assert a == pytest.approx(s - CFG.gate_pad_s, abs=0.021)  # the onset frame, minus the pad
        assert e - 0.3 < b - CFG.gate_pad_s <= e + 0.021  # opens until the tail fades into the bed


def test_gate_regions_do_not_depend_on_the_block_size():
    y, _ = _with_coughs([0.7, 12.0, 12.9, 30.5], duration=40.0, seed=3)
    whole = _regions(y, block_s=60.0)
    assert len(whole) == 3
    for block_s in (0.37, 1.0, 5.0):
        assert _regions(y, block_s=block_s) == whole


def test_noise_floor_follows_a_change_of_background():
    """A bed 30 dB louder from 20 s: loud at first, then the floor (10th percentile of 30 s) catches up."""
    rng = np.random.default_rng(4)
    y = np.concatenate([noise_bed(sample_rate=SR, rng=rng, duration_s=20.0, level_db=-60.0),
                        noise_bed(sample_rate=SR, rng=rng, duration_s=60.0, level_db=-30.0)])
    (a, b), = _regions(y, block_s=10.0)
    assert a == pytest.approx(20.0 - CFG.gate_pad_s, abs=0.021)
    assert 20.0 + 0.8 * CFG.gate_floor_s < b < 20.0 + CFG.gate_floor_s + 2.0
    levels = frame_levels(y, sample_rate=SR, state=GateState(), cfg=CFG, final=True)
    assert np.median(levels.floor[-500:]) == pytest.approx(np.percentile(levels.db[-1500:], 10), abs=0.5)


def test_gate_and_no_gate_find_the_same_coughs_and_gating_skips_most_of_a_quiet_night():
    blocks = list(night(hours=0.1, coughs_per_hour=60, seed=5))
    y = np.concatenate([b for b, _ in blocks])
    planted = [e for _, events in blocks for e in events]
    scorer = PlantedScorer(y, planted)
    gated = detect_array(y, scorer, DetectConfig(gate=True))
    gated_calls, scorer.calls = scorer.calls, 0
    ungated = detect_array(y, scorer, DetectConfig(gate=False))
    assert len(planted) == 6 and len(gated.events) == 6
    assert [(e.start, e.end, e.score) for e in gated.events] == [(e.start, e.end, e.score) for e in ungated.events]
    assert gated.active_s / gated.duration_s < 0.05  # six coughs (~0.5 s each + 2 x 0.5 s pad) in six minutes
    assert scorer.calls == len(ungated.scores)  # without the gate every window is scored ...
    assert gated_calls < 0.1 * scorer.calls  # ... with it, only those near the coughs
    assert np.all(gated.scores[gated.scores > 0] == ungated.scores[gated.scores > 0])
