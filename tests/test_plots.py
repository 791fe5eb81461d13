"""respira.plots: valid PNGs of the expected size, written to path, no pyplot state left behind."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
import pytest

from respira import plots
from respira.errors import AudioError, ConfigError, DataError
from respira.features import FeatureConfig, log_mel, mfcc

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(data: bytes) -> np.ndarray:
    assert data.startswith(PNG_SIGNATURE)
    return mpimg.imread(io.BytesIO(data), format="png")


def tone(seconds: float = 1.0, sr: int = 16000, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)


def is_drawn(image: np.ndarray) -> bool:
    """More than a blank canvas: several distinct colours."""
    return len(np.unique(image[..., :3].reshape(-1, 3), axis=0)) > 20


@pytest.mark.parametrize("seconds", [0.2, 30.0])  # plain line, and min/max envelope
def test_waveform_png_is_a_valid_800x300_png(tmp_path, seconds):
    path = tmp_path / "wave.png"
    data = plots.waveform_png(tone(seconds), sample_rate=16000, path=path, title="cough 1")
    image = read_png(data)
    assert image.shape == (300, 800, 4) and is_drawn(image)
    assert path.read_bytes() == data


@pytest.mark.parametrize("kind", ["mel", "mfcc"])
def test_spectrogram_png_is_a_valid_png(tmp_path, kind):
    cfg = FeatureConfig()
    S = (log_mel if kind == "mel" else mfcc)(tone(), cfg).numpy()
    data = plots.spectrogram_png(S, cfg=cfg, kind=kind, path=tmp_path / "s.png")
    image = read_png(data)
    assert image.shape == (300, 800, 4) and is_drawn(image)
    assert (tmp_path / "s.png").read_bytes() == data


def test_spectrogram_axes_are_seconds_and_hz():
    cfg = FeatureConfig(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40,
                        fmax=4000.0)
    S = log_mel(tone(2.0, sr=8000), cfg).numpy()
    fig, ax = plots._spectrogram_figure(S, cfg=cfg, kind="mel")
    assert ax.get_xlim() == pytest.approx((0.0, S.shape[1] * 80 / 8000))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "1k" in labels and "2k" in labels
    assert fig.axes[1].get_ylabel() == "dB"  # the colorbar
    _, ax = plots._spectrogram_figure(S[:13], cfg=cfg, kind="mfcc")
    assert ax.get_ylabel() == "coefficient" and ax.get_ylim() == (-0.5, 12.5)


def test_probabilities_png_bars_sorted_with_lengths_in_proportion():
    probs = {"speech": 0.2, "cough": 0.6, "laugh": 0.05, "sneeze": 0.15}
    image = read_png(plots.probabilities_png(probs, title="clip.wav"))
    assert image.shape == (300, 800, 4)
    bar = np.all(np.abs(image[..., :3] - np.array([0x1F, 0x77, 0xB4]) / 255) < 0.02, axis=-1)
    rows = np.flatnonzero(bar.sum(axis=1) > 5)
    groups = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    widths = [bar[g].sum(axis=1).max() for g in groups]  # top to bottom
    assert len(widths) == 4
    np.testing.assert_allclose(np.array(widths) / widths[0], [1, 0.2 / 0.6, 0.15 / 0.6, 0.05 / 0.6],
                               atol=0.02)


def test_many_classes_get_a_taller_figure():
    probs = {f"class {i}": i / 20 for i in range(20)}
    image = read_png(plots.probabilities_png(probs))
    assert image.shape[1] == 800 and image.shape[0] > 500


def test_no_pyplot_figures_left_open():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.waveform_png(tone(0.1), sample_rate=16000)
    plots.probabilities_png({"a": 1.0})
    assert plt.get_fignums() == before


def test_bad_inputs_raise_typed_errors():
    cfg = FeatureConfig()
    with pytest.raises(AudioError, match="1-D"):
        plots.waveform_png(np.zeros((2, 100)), sample_rate=16000)
    with pytest.raises(ConfigError, match="kind"):
        plots.spectrogram_png(np.zeros((64, 10)), cfg=cfg, kind="cqt")
    with pytest.raises(DataError, match="n_mels"):
        plots.spectrogram_png(np.zeros((40, 10)), cfg=cfg)
    with pytest.raises(DataError, match="no probabilities"):
        plots.probabilities_png({})


def alternating_tones(seconds: float = 2.0, sr: int = 16000) -> np.ndarray:
    """300 Hz and 3 kHz taking turns every 0.25 s, louder in the second half: structure in every coefficient."""
    t = np.arange(int(sr * seconds)) / sr
    hz = np.where((t * 4).astype(int) % 2 == 0, 300.0, 3000.0)
    gain = np.where(t < seconds / 2, 0.1, 0.4)
    noise = 0.005 * np.random.default_rng(0).standard_normal(t.size)
    return (gain * np.sin(2 * np.pi * np.cumsum(hz) / sr) + noise).astype(np.float32)


def test_the_mfcc_colour_scale_spans_every_coefficient_not_only_the_energy():
    cfg = FeatureConfig()
    S = mfcc(alternating_tones(), cfg).numpy()
    raw_share = np.ptp(S[1:], axis=1) / np.ptp(S)  # of one colour scale over S as it is
    assert np.median(raw_share) < 0.15  # coefficient 0 would squash the rest into a few colours
    fig, ax = plots._spectrogram_figure(S, cfg=cfg, kind="mfcc")
    image = ax.images[0]
    drawn, (low, high) = np.asarray(image.get_array()), image.get_clim()
    assert drawn.shape == S.shape and (low, high) == (-plots.MFCC_SD_RANGE, plots.MFCC_SD_RANGE)
    share = np.ptp(np.clip(drawn[1:], low, high), axis=1) / (high - low)
    assert share.min() > 0.4, share  # every higher coefficient spans a good part of the colours
    tone_a = (np.arange(S.shape[1]) * cfg.hop_length / cfg.sample_rate * 4).astype(int) % 2 == 0
    moved = np.abs(drawn[:, tone_a].mean(axis=1) - drawn[:, ~tone_a].mean(axis=1))
    assert (moved[1:] > 0.5).mean() > 0.5  # the alternation shows in most of them
    assert ax.get_ylabel() == "coefficient" and fig.axes[1].get_ylabel() == "SD, per coefficient over time"


def test_standardised_mfcc_rows_have_mean_0_and_sd_1_and_a_constant_row_is_0(rng):
    S = np.vstack([rng.normal(-300, 40, 50), rng.normal(5, 0.5, 50), np.full(50, 7.0)])
    z = plots.standardised_mfcc(S)
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[:2].mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(z[:2].std(axis=1), 1, atol=1e-5)
    assert not z[2].any()
