"""The preprocessing pipeline: each augmentation step does what it says, and none runs at evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from respira.config import AugmentConfig
from respira.errors import ConfigError
from respira.features import FeatureConfig, features
from respira.train.augment import Pipeline, build_pipeline, class_weights, sample_weights

SR = 16000
FEATS = FeatureConfig(n_mels=40)
OFF = AugmentConfig(shift=False, gain_db=0.0, noise_p=0.0, spec_time_masks=0, spec_freq_masks=0, mixup_p=0.0)


def pipeline(**changes: object) -> Pipeline:
    return build_pipeline(OFF.__class__(**{**OFF.__dict__, **changes}), FEATS, clip_s=1.0)


def step(p: Pipeline, name: str):
    return next(s for s in p.steps if s.name == name)


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(y: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(y.numpy() * np.hanning(len(y))))
    return float(np.argmax(spectrum) * SR / len(y))


Y3 = torch.eye(3)


def test_steps_are_named_and_marked() -> None:
    p = build_pipeline(AugmentConfig(pitch_shift=2.0, time_stretch=0.1), FEATS, clip_s=1.0)
    assert [(s.name, s.augment) for s in p.steps] == [
        ("shift", True), ("fit", False), ("pitch_shift", True), ("gain", True), ("noise", True),
        ("features", False), ("time_stretch", True), ("time_masks", True), ("freq_masks", True), ("mixup", True),
    ]
    assert [s.name for s in pipeline().steps] == ["fit", "features"]  # switched-off steps are left out
    waveform_mixup = build_pipeline(AugmentConfig(mixup_on="waveform"), FEATS, clip_s=1.0)
    assert [s.name for s in waveform_mixup.steps].index("mixup") < [s.name for s in waveform_mixup.steps].index("features")


def test_evaluation_runs_no_augmentation() -> None:
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 16000, 40000)]
    full = build_pipeline(AugmentConfig(pitch_shift=3.0, time_stretch=0.2, mixup_p=1.0), FEATS, clip_s=1.0)
    (x,), y = full(clips, Y3, train=False)
    centred = np.stack([np.pad(clips[0], (4000, 4000)), clips[1], clips[2][12000:28000]])
    torch.testing.assert_close(x, features(centred, FEATS))
    torch.testing.assert_close(y, Y3)
    (x_train,), _ = full(clips, Y3, train=True, rng=np.random.default_rng(1))
    assert x_train.shape == x.shape and not torch.allclose(x_train, x)


def test_shift_takes_random_crops_and_placements() -> None:
    p = pipeline(shift=True)
    impulse = np.zeros(SR // 2, np.float32)
    impulse[0] = 1.0
    long = np.arange(3 * SR, dtype=np.float32)
    offsets, starts = set(), set()
    for seed in range(8):
        (short_out, long_out), _ = step(p, "shift").fn([impulse, long], Y3[:2], np.random.default_rng(seed))
        assert len(short_out) == len(long_out) == SR
        offsets.add(int(np.argmax(short_out)))
        starts.add(int(long_out[0]))
        np.testing.assert_array_equal(long_out, np.arange(long_out[0], long_out[0] + SR, dtype=np.float32))
    assert len(offsets) > 4 and all(0 <= o <= SR // 2 for o in offsets)
    assert len(starts) > 4 and all(0 <= s <= 2 * SR for s in starts)


def test_gain_stays_within_its_range() -> None:
    x = torch.from_numpy(np.stack([tone(440)] * 64))
    out = step(pipeline(gain_db=6.0), "gain").fn(x, Y3, np.random.default_rng(0))[0]
    db = 20 * torch.log10(out.abs().amax(dim=1) / x.abs().amax(dim=1))
    assert db.min() >= -6.0 - 1e-4 and db.max() <= 6.0 + 1e-4
    assert db.max() - db.min() > 6.0  # spread over the range, not one gain for all


def test_noise_has_the_drawn_snr() -> None:
    x = torch.from_numpy(np.stack([tone(440)] * 32))
    out = step(pipeline(noise_p=1.0, noise_snr_db=(10.0, 20.0)), "noise").fn(x, Y3, np.random.default_rng(0))[0]
    noise = out - x
    snr = 10 * torch.log10(x.square().mean(1) / noise.square().mean(1))
    assert snr.min() > 9.5 and snr.max() < 20.5
    half = step(pipeline(noise_p=0.5), "noise").fn(x, Y3, np.random.default_rng(0))[0]
    untouched = (half == x).all(dim=1)
    assert 0 < int(untouched.sum()) < len(x)  # p = 0.5: some clips are left as they are


def test_pitch_shift_moves_a_tone_by_the_drawn_semitones() -> None:
    x = torch.from_numpy(tone(1000.0)[None])
    out = step(pipeline(pitch_shift=4.0), "pitch_shift").fn(x, Y3[:1], np.random.default_rng(3))[0]
    semitones = np.random.default_rng(3).uniform(-4.0, 4.0, size=1)[0]
    assert out.shape == x.shape
    assert peak_freq(out[0]) == pytest.approx(1000.0 * 2 ** (semitones / 12), rel=0.01)
    assert abs(semitones) > 0.5  # the check above means something


def test_time_stretch_moves_frames_but_not_bins() -> None:
    x = torch.zeros(1, 1, 40, 101)
    x[0, 0, 10, 80] = 1.0  # one cell 30 frames after the centre
    out = step(pipeline(time_stretch=0.3), "time_stretch").fn(x, Y3[:1], np.random.default_rng(5))[0]
    rate = np.random.default_rng(5).uniform(0.7, 1.3, size=1)[0]
    assert out.shape == x.shape
    frame = int(out[0, 0, 10].argmax())
    assert frame == pytest.approx(50 + 30 * rate, abs=1.5)
    assert int(out[0, 0].amax(dim=1).argmax()) == 10  # the bin stays


def test_spec_masks_fill_whole_frames_and_bins_with_the_mean() -> None:
    x = torch.rand(16, 1, 40, 100) + 1.0
    p = pipeline(spec_time_masks=2, spec_time_width=0.1, spec_freq_masks=2, spec_freq_width=8)
    timed = step(p, "time_masks").fn(x, Y3, np.random.default_rng(0))[0]
    mean = x.mean(dim=(1, 2, 3))
    masked_frames = (timed == mean[:, None, None, None]).all(dim=2)[:, 0]  # [16, frames]
    changed_frames = (timed != x).any(dim=2)[:, 0]
    assert torch.equal(masked_frames, changed_frames)
    assert 0 < masked_frames.sum(dim=1).max() <= 2 * 10
    freq = step(p, "freq_masks").fn(x, Y3, np.random.default_rng(0))[0]
    masked_bins = (freq == mean[:, None, None, None]).all(dim=3)[:, 0]
    assert torch.equal(masked_bins, (freq != x).any(dim=3)[:, 0])
    assert 0 < masked_bins.sum(dim=1).max() <= 2 * 8


def test_masks_cover_both_maps_of_dual_features() -> None:
    dual = FeatureConfig(kind="dual", n_mels=40, n_mfcc=13)
    p = build_pipeline(OFF.__class__(**{**OFF.__dict__, "spec_time_masks": 1, "spec_time_width": 0.5}), dual, clip_s=1.0)
    clips = [np.random.default_rng(i).standard_normal(SR).astype(np.float32) for i in range(4)]
    (mfcc, logmel), _ = p(clips, torch.eye(4), train=True, rng=np.random.default_rng(0))
    assert mfcc.shape[2] == 13 and logmel.shape[2] == 40
    (mfcc0, logmel0), _ = p(clips, torch.eye(4), train=False)
    np.testing.assert_array_equal((mfcc != mfcc0).any(dim=2).numpy(), (logmel != logmel0).any(dim=2).numpy())


def test_mixup_blends_inputs_and_targets_alike() -> None:
    x = torch.arange(4, dtype=torch.float32)[:, None, None, None].expand(4, 1, 2, 3).clone()
    y = torch.eye(4)
    out, soft = step(pipeline(mixup_p=1.0, mixup_alpha=0.4), "mixup").fn(x, y, np.random.default_rng(0))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(out[:, 0, 0, 0], soft @ torch.arange(4, dtype=torch.float32))  # same weights for x and y
    assert not torch.equal(soft, y)
    skipped = step(pipeline(mixup_p=0.2), "mixup").fn(x, y, np.random.default_rng(1))  # rng.random() = 0.51 > 0.2
    assert skipped[1] is y


def test_balanced_sampling_and_loss_weights() -> None:
    targets = np.eye(3, dtype=np.float32)[[0] * 60 + [1] * 30 + [2] * 10]
    w = sample_weights(targets)
    per_class = [w[targets[:, c] == 1].sum() for c in range(3)]
    np.testing.assert_allclose(per_class, [1 / 3] * 3)
    np.testing.assert_allclose(class_weights(targets, task="classification"), [100 / 180, 100 / 90, 100 / 30])
    multi = np.array([[1, 0], [1, 1], [0, 0], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(class_weights(multi, task="multilabel"), [1.0, 3.0])
    np.testing.assert_allclose(sample_weights(multi), [1 / 3, 1 / 3, 1 / 6, 1 / 6])


def test_loudest_crop_keeps_a_short_event_that_a_random_crop_can_miss():
    from respira.train.augment import _loudest

    sr, length = 16000, 16000
    clip = np.zeros(6 * sr, dtype=np.float32)
    clip[int(4.8 * sr) : int(5.0 * sr)] = 0.5  # a 0.2-s burst near the end of a 6-s clip
    rng = np.random.default_rng(0)
    for _ in range(50):
        window = _loudest(clip, length=length, rng=rng)
        assert len(window) == length and np.abs(window).max() == 0.5
    centred = _loudest(clip, length=length)
    assert np.flatnonzero(centred)[0] == pytest.approx(length / 2, abs=sr * 0.02)  # centred on the onset frame
    short = np.ones(100, dtype=np.float32)
    assert _loudest(short, length=length) is short


def test_loudest_crop_spares_only_event_rows():
    from respira.train.augment import _shift

    sr = 16000
    clip = np.zeros(6 * sr, dtype=np.float32)
    clip[int(4.8 * sr) : int(5.0 * sr)] = 0.5
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 20)  # column 0 = the eventless class
    windows = _shift([clip] * 40, y, np.random.default_rng(0), length=sr, loudest=True, eventless=0)
    has_burst = np.array([np.abs(w).max() == 0.5 for w in windows])
    assert has_burst[1::2].all()  # event rows always keep the burst
    assert not has_burst[0::2].all()  # eventless rows are cropped anywhere, quiet stretches included


def test_background_adds_an_eventless_clip_of_the_batch_at_the_drawn_snr() -> None:
    # rows 0-15: events (a 440 Hz tone); rows 16-31: the eventless class (a 3 kHz tone, another level)
    x = torch.from_numpy(np.stack([tone(440)] * 16 + [tone(3000, amp=0.1)] * 16))
    y = torch.tensor([[0.0, 1.0]] * 16 + [[1.0, 0.0]] * 16)
    p = build_pipeline(AugmentConfig(background_p=1.0, background_snr_db=(5.0, 15.0)), FEATS, clip_s=1.0, eventless=0)
    out, labels = step(p, "background").fn(x, y, np.random.default_rng(0))
    added = (out - x)[:16]
    snr = 10 * torch.log10(x[:16].square().mean(1) / added.square().mean(1))
    assert snr.min() > 4.9 and snr.max() < 15.1
    spectrum = torch.fft.rfft(added, dim=1).abs()
    assert (spectrum.argmax(dim=1) == 3000).all()  # what was added is the eventless clip (1-s clips: bin = Hz)
    assert torch.equal(labels, y)
    assert "background" not in [s.name for s in build_pipeline(AugmentConfig(background_p=1.0), FEATS, clip_s=1.0).steps]


# --- pad: what fills the window around a short clip in training ----------------------------------

LOUDEST = dict(crop="loudest", gain_db=0.0, noise_p=0.0, spec_time_masks=0, spec_freq_masks=0, mixup_p=0.0)
Y_EVENT_THEN_EVENTLESS = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # column 0 = the eventless class


def short_cough(seed: int = 0) -> np.ndarray:
    """0.5 s: a floor of white noise at -60 dBFS RMS with a 0.1-s burst in the middle."""
    clip = np.random.default_rng(seed).standard_normal(SR // 2).astype(np.float32) * 1e-3
    clip[3000:4600] += tone(300, 0.1, amp=0.5)
    return clip


def windows_before_features(aug: AugmentConfig, clips: list[np.ndarray], y: torch.Tensor, seed: int) -> torch.Tensor:
    p = build_pipeline(aug, FEATS, clip_s=1.0, eventless=0)
    x, rng = list(clips), np.random.default_rng(seed)
    for s in p.steps[: [s.name for s in p.steps].index("fit") + 1]:
        x, y = s.fn(x, y, rng)
    return x


def test_pad_zeros_is_todays_pipeline() -> None:
    clips = [short_cough(), np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32) * 0.1]
    today = build_pipeline(AugmentConfig(**LOUDEST), FEATS, clip_s=1.0, eventless=0)
    zeros = build_pipeline(AugmentConfig(**LOUDEST, pad="zeros"), FEATS, clip_s=1.0, eventless=0)
    assert "pad" not in [s.name for s in zeros.steps]
    (a,), _ = today(clips, Y_EVENT_THEN_EVENTLESS, train=True, rng=np.random.default_rng(3))
    (b,), _ = zeros(clips, Y_EVENT_THEN_EVENTLESS, train=True, rng=np.random.default_rng(3))
    assert torch.equal(a, b)
    window = windows_before_features(AugmentConfig(**LOUDEST), clips, Y_EVENT_THEN_EVENTLESS, 3)[0].numpy()
    np.testing.assert_array_equal(window, np.pad(clips[0], (SR // 4, SR // 4)))  # the event row: centred in zeros


@pytest.mark.parametrize("seed", range(5))
def test_pad_noise_fills_the_window_at_the_clips_floor(seed: int) -> None:
    clip = short_cough(seed)
    aug = AugmentConfig(**LOUDEST, pad="noise")
    window = windows_before_features(aug, [clip, clip], Y_EVENT_THEN_EVENTLESS, seed)[0].numpy()
    start = SR // 4
    np.testing.assert_array_equal(window[start : start + len(clip)], clip)  # the event row stays centred
    assert not ((window[1:] == 0) & (window[:-1] == 0)).any()  # no run of digital silence
    pad = np.concatenate([window[:start], window[start + len(clip) :]])
    level_db = 20 * np.log10(np.sqrt(np.mean(np.square(pad))) / 1e-3)  # the floor: -60 dBFS, within +-6 dB
    assert -7.0 < level_db < 7.0


def test_pad_places_eventless_rows_at_random_and_leaves_long_clips() -> None:
    impulse = np.zeros(SR // 2, np.float32)
    impulse[0] = 1.0
    long = np.arange(3 * SR, dtype=np.float32)
    aug = AugmentConfig(**LOUDEST, pad="noise")
    onsets = {int(np.argmax(windows_before_features(aug, [long, impulse], Y_EVENT_THEN_EVENTLESS, s)[1].numpy()))
              for s in range(8)}
    assert len(onsets) > 4 and all(0 <= o <= SR // 2 for o in onsets)
    p = build_pipeline(aug, FEATS, clip_s=1.0, eventless=0)
    assert step(p, "pad").fn([long], Y_EVENT_THEN_EVENTLESS[:1], np.random.default_rng(0))[0][0] is long


def test_pad_background_uses_an_eventless_clip_of_the_batch() -> None:
    clip = short_cough()
    hum = tone(1000, 2.0, amp=0.2)  # the eventless row: a 1-kHz tone
    aug = AugmentConfig(**LOUDEST, pad="background")
    y = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    window = windows_before_features(aug, [clip, clip, hum], y, 0)[0].numpy()
    pad = window[: SR // 4]
    assert abs(20 * np.log10(np.sqrt(np.mean(np.square(pad))) / 1e-3)) < 7.0
    assert peak_freq(torch.from_numpy(pad.copy())) == pytest.approx(1000, abs=SR / len(pad) * 2)
    with pytest.raises(ConfigError, match="augment.pad"):
        build_pipeline(aug, FEATS, clip_s=1.0)


def test_pad_of_a_clip_of_digital_silence_is_not_silent() -> None:
    p = build_pipeline(AugmentConfig(**LOUDEST, pad="noise"), FEATS, clip_s=1.0, eventless=0)
    (window,), _ = step(p, "pad").fn([np.zeros(SR // 2, np.float32)], Y_EVENT_THEN_EVENTLESS[:1], np.random.default_rng(0))
    assert np.count_nonzero(window) == SR // 2
