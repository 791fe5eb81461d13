"""The pictures an answer may carry, as PNG data URLs: a clip's waveform, MFCC, mel and
probabilities, a recording's score timeline."""

from __future__ import annotations

import base64
import io

import numpy as np

from respira.inference import Model


def clip_images(y: np.ndarray, model: Model, probabilities: dict[str, float] | None) -> dict[str, str]:
    """Waveform, MFCC and log-mel (the model's feature settings) and the probabilities as PNG data URLs."""
    import torch

    from respira.features import log_mel, mfcc
    from respira.plots import probabilities_png, spectrogram_png, waveform_png

    cfg = model.feature_config
    with torch.inference_mode():
        mel = log_mel(y, cfg).numpy()
        coefficients = mfcc(y, cfg).numpy()
    pngs = {
        "waveform": waveform_png(y, sample_rate=model.sample_rate),
        "mfcc": spectrogram_png(coefficients, cfg=cfg, kind="mfcc"),
        "mel": spectrogram_png(mel, cfg=cfg, kind="mel"),
    }
    if probabilities:
        pngs["probabilities"] = probabilities_png(probabilities)
    return {name: data_url(png) for name, png in pngs.items()}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def timeline_png(result) -> bytes:
    """The detector's score timeline of `result` as PNG bytes."""
    from respira.detect.night_report import timeline_figure

    buffer = io.BytesIO()
    timeline_figure(result).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
