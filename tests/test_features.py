"""respira.features against librosa: parity, batching, spans, shapes, deltas, config errors."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from respira.errors import AudioError, ConfigError
from respira.features import (
    AMIN,
    FeatureConfig,
    FeatureExtractor,
    _delta,
    crop_or_pad,
    dct_matrix,
    features,
    log_mel,
    mel_filters,
    mel_frequencies,
    mfcc,
    n_frames,
)

CONFIGS = {
    "8k": FeatureConfig(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40,
                        fmax=4000.0, n_mfcc=20),
    "16k": FeatureConfig(),
    "16k-no-top-db": FeatureConfig(top_db=None),
    "48k": FeatureConfig(sample_rate=48000, n_fft=2048, win_length=1200, hop_length=480,
                         n_mels=128),
    "48k-no-top-db": FeatureConfig(sample_rate=48000, n_fft=2048, win_length=1200,
                                   hop_length=480, n_mels=128, top_db=None),
    "odd-fft": FeatureConfig(n_fft=511, win_length=401, hop_length=123, fmin=0.0, n_mfcc=13),
}


def reference(y: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """librosa's log-mel [.., n_mels, frames] and MFCC [.., n_mfcc, frames] for the same parameters."""
    S = librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window="hann", center=True, pad_mode="constant", power=2.0,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=False, norm="slaney",
    )
    L = librosa.power_to_db(S, ref=1.0, amin=AMIN, top_db=cfg.top_db)
    return L, librosa.feature.mfcc(S=L, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho")


def chirp(sr: int, seconds: float) -> np.ndarray:
    """A linear chirp from 100 Hz to sr/4, amplitude 0.5."""
    t = np.arange(int(sr * seconds)) / sr
    return 0.5 * np.sin(2 * np.pi * (100 * t + (sr / 4 - 100) * t**2 / (2 * seconds)))


def signal(kind: str, sr: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    made = {
        "noise": lambda: 0.1 * rng.standard_normal(n),
        "chirp": lambda: chirp(sr, seconds),
        "chirp+noise": lambda: chirp(sr, seconds) + 1e-3 * rng.standard_normal(n),
    }[kind]()
    return made.astype(np.float32)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("kind", ["noise", "chirp", "chirp+noise"])
def test_log_mel_and_mfcc_equal_librosa(name, kind):
    cfg = CONFIGS[name]
    y = signal(kind, cfg.sample_rate, 1.3, seed=len(name))
    L, M = reference(y, cfg)
    ours_l, ours_m = log_mel(y, cfg), mfcc(y, cfg)
    assert ours_l.dtype == torch.float32
    assert ours_l.shape == L.shape == (cfg.n_mels, n_frames(y.size, cfg))
    assert ours_m.shape == M.shape
    assert np.abs(ours_l.numpy() - L).max() <= 1e-3
    assert np.abs(ours_m.numpy() - M).max() / np.abs(M).max() <= 1e-3


def test_long_signal_crosses_spans_and_equals_librosa():
    cfg = CONFIGS["16k"]
    y = signal("chirp+noise", cfg.sample_rate, 40.0, seed=3)  # 4001 frames: many spans
    L, _ = reference(y, cfg)
    assert np.abs(log_mel(y, cfg).numpy() - L).max() <= 1e-3


@pytest.mark.parametrize("batch", [1, 3])
def test_spans_equal_one_shot(batch):
    cfg = CONFIGS["odd-fft"]
    y = torch.from_numpy(signal("chirp+noise", cfg.sample_rate, 3.0, seed=4)).reshape(batch, -1)
    one_shot = FeatureExtractor(cfg, span_frames=10**9).log_mel(y)
    for span_frames in (None, 1, 7, 64):
        spans = FeatureExtractor(cfg, span_frames=span_frames).log_mel(y)
        torch.testing.assert_close(spans, one_shot, rtol=0, atol=1e-5)


def test_batch_equals_single_with_top_db_per_item():
    cfg = CONFIGS["16k"]
    loud = signal("chirp", 16000, 1.0, seed=5)
    quiet = 0.1 * loud[::-1].copy()  # 20 dB lower, with bins below its own max - top_db
    batch = log_mel(np.stack([loud, quiet]), cfg)
    for i, y in enumerate([loud, quiet]):
        single = log_mel(y, cfg)
        torch.testing.assert_close(batch[i], single, rtol=0, atol=1e-5)
        # each item is clamped at its own max - top_db, not the batch's
        assert batch[i].min() == pytest.approx(single.max().item() - cfg.top_db, abs=1e-3)
    assert batch[1].max() == pytest.approx(batch[0].max().item() - 20, abs=0.01)


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad])
def test_works_under_inference_mode_and_no_grad(mode):
    cfg = FeatureConfig(deltas=1)
    y = signal("noise", 16000, 3.0, seed=12).reshape(3, -1)
    expected = features(y, cfg)
    with mode():
        torch.testing.assert_close(features(y, cfg), expected)


def test_tensor_input_and_numpy_input_agree():
    cfg = CONFIGS["8k"]
    y = signal("noise", 8000, 0.5, seed=7)
    torch.testing.assert_close(log_mel(torch.from_numpy(y), cfg), log_mel(y, cfg))
    torch.testing.assert_close(log_mel(y.astype(np.float64), cfg), log_mel(y, cfg))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_mel_filters_dct_and_mel_frequencies_equal_librosa_and_scipy(name):
    import scipy.fft

    cfg = CONFIGS[name]
    ours = mel_filters(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.mel_fmax)
    theirs = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                 fmax=cfg.mel_fmax, htk=False, norm="slaney", dtype=np.float32)
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs)
    np.testing.assert_allclose(mel_frequencies(cfg.n_mels, fmin=cfg.fmin, fmax=cfg.mel_fmax),
                               librosa.mel_frequencies(n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.mel_fmax), rtol=1e-12)
    dct = scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc]
    np.testing.assert_allclose(dct_matrix(cfg.n_mfcc, cfg.n_mels), dct, rtol=0, atol=1e-12)


def test_tone_peaks_in_the_mel_band_of_its_frequency():
    cfg = CONFIGS["16k"]
    t = np.arange(16000) / 16000
    y = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    peak = int(log_mel(y, cfg).mean(dim=1).argmax())
    centers = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=8000.0)[1:-1]
    assert abs(centers[peak] - 1000) < 60


@pytest.mark.parametrize("n_samples", [1, 79, 80, 81, 255, 256, 257, 8000, 8001])
def test_n_frames_matches_output(n_samples):
    cfg = CONFIGS["8k"]
    y = np.random.default_rng(n_samples).standard_normal(n_samples).astype(np.float32)
    assert log_mel(y, cfg).shape[-1] == n_frames(n_samples, cfg) == 1 + n_samples // 80


def test_features_shapes_per_kind_and_deltas():
    y = np.random.default_rng(8).standard_normal((3, 16000)).astype(np.float32)
    frames = n_frames(16000, FeatureConfig())

    x = features(y, FeatureConfig(kind="logmel"))
    assert x.shape == (3, 1, 64, frames)
    torch.testing.assert_close(x[:, 0], log_mel(y, FeatureConfig()))

    x = features(y, FeatureConfig(kind="mfcc", n_mfcc=20, deltas=2))
    assert x.shape == (3, 3, 20, frames)
    torch.testing.assert_close(x[:, 0], mfcc(y, FeatureConfig(n_mfcc=20)))

    m, lm = features(y, FeatureConfig(kind="dual", n_mfcc=13, deltas=1))
    assert m.shape == (3, 2, 13, frames) and lm.shape == (3, 2, 64, frames)

    assert features(y[0], FeatureConfig()).shape == (1, 1, 64, frames)


def test_extractor_forward_equals_features():
    cfg = FeatureConfig(kind="dual", deltas=2)
    y = torch.from_numpy(np.random.default_rng(9).standard_normal((2, 4000)).astype(np.float32))
    for a, b in zip(FeatureExtractor(cfg)(y), features(y, cfg)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("order", [1, 2])
def test_delta_channels_equal_librosa_delta(order):
    cfg = FeatureConfig(deltas=2)
    y = signal("chirp+noise", 16000, 0.5, seed=10)
    x = features(y, cfg)[0]
    expected = librosa.feature.delta(x[0].numpy(), width=9, order=order, mode="interp")
    np.testing.assert_allclose(x[order].numpy(), expected, atol=1e-4)


def test_delta_of_ramp_is_its_slope_and_of_parabola_its_curvature():
    t = torch.arange(40, dtype=torch.float64)
    ramp = (3.0 * t - 7.0).expand(2, 4, 40)
    torch.testing.assert_close(_delta(ramp, 1), torch.full_like(ramp, 3.0))
    torch.testing.assert_close(_delta(ramp, 2), torch.zeros_like(ramp))
    parabola = (0.5 * t**2).expand(1, 1, 40)
    torch.testing.assert_close(_delta(parabola, 2), torch.ones_like(parabola))
    torch.testing.assert_close(_delta(parabola, 1)[..., 4:-4], t[4:-4].expand(1, 1, 32))


@pytest.mark.parametrize("frames", [1, 2, 3, 6])
def test_delta_of_short_input_uses_a_narrower_window(frames):
    ramp = torch.arange(frames, dtype=torch.float64).expand(1, 2, frames) * 2.0
    expected = torch.full_like(ramp, 2.0) if frames >= 3 else torch.zeros_like(ramp)
    torch.testing.assert_close(_delta(ramp, 1), expected)


def test_crop_or_pad_center_and_start():
    y = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(crop_or_pad(y, length=4), [4, 5, 6, 7])
    np.testing.assert_array_equal(crop_or_pad(y, length=4, mode="start"), [1, 2, 3, 4])
    short = np.array([1.0, 2.0], dtype=np.float32)
    np.testing.assert_array_equal(crop_or_pad(short, length=5), [0, 1, 2, 0, 0])
    np.testing.assert_array_equal(crop_or_pad(short, length=6), [0, 0, 1, 2, 0, 0])
    np.testing.assert_array_equal(crop_or_pad(short, length=5, mode="start"), [1, 2, 0, 0, 0])
    assert crop_or_pad(short, length=5).dtype == np.float32
    np.testing.assert_array_equal(crop_or_pad(y, length=10), y)
    stereo = np.stack([y, -y])
    np.testing.assert_array_equal(crop_or_pad(stereo, length=2), [[5, 6], [-5, -6]])


def test_crop_or_pad_random_is_seeded_and_keeps_contiguous_audio():
    y = np.arange(1, 11, dtype=np.float32)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(30):
        crop = crop_or_pad(y, length=4, mode="random", rng=rng)
        assert crop.shape == (4,) and np.all(np.diff(crop) == 1)
        starts.add(int(crop[0]))
        padded = crop_or_pad(y[:3], length=8, mode="random", rng=rng)
        nonzero = np.flatnonzero(padded)
        np.testing.assert_array_equal(padded[nonzero], [1, 2, 3])
        assert np.all(np.diff(nonzero) == 1)
    assert len(starts) > 3 and starts <= set(range(1, 8))
    a = crop_or_pad(y, length=4, mode="random", rng=np.random.default_rng(42))
    b = crop_or_pad(y, length=4, mode="random", rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


def test_crop_or_pad_rejects_bad_arguments():
    y = np.zeros(10, dtype=np.float32)
    with pytest.raises(ConfigError, match="rng"):
        crop_or_pad(y, length=4, mode="random")
    with pytest.raises(ConfigError, match="mode"):
        crop_or_pad(y, length=4, mode="middle")
    with pytest.raises(ConfigError, match="length"):
        crop_or_pad(y, length=0)


def test_config_round_trips_and_is_hashable():
    cfg = FeatureConfig(kind="mfcc", sample_rate=8000, n_fft=256, win_length=200, hop_length=80,
                        n_mels=40, fmax=4000.0, top_db=None, n_mfcc=20, deltas=1)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert hash(FeatureConfig.from_dict(cfg.to_dict())) == hash(cfg)
    assert FeatureConfig().mel_fmax == 8000.0 and FeatureConfig().channels == 1


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"n_mel": 64}, "n_mel"),
        ({"win_length": 600}, "win_length"),
        ({"fmax": 9000.0}, "fmax"),
        ({"fmin": 8000.0}, "fmin"),
        ({"n_mfcc": 80}, "n_mfcc"),
        ({"kind": "cqt"}, "kind"),
        ({"kind": ["logmel"]}, "kind"),
        ({"deltas": 3}, "deltas"),
        ({"hop_length": 0}, "hop_length"),
        ({"top_db": -10.0}, "top_db"),
        ({"n_fft": "512"}, "n_fft"),
        ({"n_mels": 64.0}, "n_mels"),
        ({"fmin": None}, "fmin"),
    ],
)
def test_config_errors_name_the_key(values, named):
    with pytest.raises(ConfigError, match=named):
        FeatureConfig.from_dict(values)


def test_config_from_non_mapping_is_a_config_error():
    with pytest.raises(ConfigError, match="mapping"):
        FeatureConfig.from_dict(["kind", "logmel"])


def test_bad_audio_is_an_audio_error():
    cfg = FeatureConfig()
    with pytest.raises(AudioError, match="empty"):
        log_mel(np.zeros(0, dtype=np.float32), cfg)
    with pytest.raises(AudioError, match="shape"):
        log_mel(np.zeros((1, 2, 100), dtype=np.float32), cfg)
    with pytest.raises(AudioError, match="list"):
        log_mel([0.0, 1.0], cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    cfg = FeatureConfig(kind="dual", deltas=1)
    y = torch.from_numpy(signal("chirp+noise", 16000, 20.0, seed=11)).reshape(2, -1)
    cpu = features(y, cfg)
    gpu = features(y.cuda(), cfg)
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-3)
