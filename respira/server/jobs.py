"""The work behind /predict and /detect, run in a worker thread: decode, score, draw.

Both go through the same core as the CLI and the Python API (`Model.predict`,
`respira.detect.detect_file`), so the server's numbers are the library's numbers.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path

import numpy as np

from respira.errors import AudioError
from respira.inference import Model
from respira.server.api_errors import ApiError

DECODE_BLOCK_S = 30.0
"""Seconds decoded at a time while checking the length of a /predict upload."""

SUMMARY_KEYS = ("coughs", "bouts", "coughs_per_hour", "hours_analysed", "hours_active")
RECORDING_NAME = "recording"
"""What the detector calls an upload (in figure titles); the temporary file's name never shows."""


def predict(model: Model, data: bytes, *, max_s: float, images: bool) -> dict:
    """Audio bytes -> the /predict answer: `Model.predict`'s record without "file", plus
    "model", "diagnosis" (binary models), "warnings" (silent, clipped, very short; when any)
    and, with `images`, PNG data URLs."""
    from respira.audio import quality_warnings

    y = decode(data, sr=model.sample_rate, max_s=max_s)
    record = model.predict(y, sr=model.sample_rate)[0]
    if "error" in record:
        raise ApiError(415, _upload_message(record["error"]))
    answer = {"model": model.name, **{k: v for k, v in record.items() if k != "file"}}
    if model.positive is not None and "label" in record:
        answer["diagnosis"] = model.positive if record["label"] == model.positive else f"not {model.positive}"
    if warnings := quality_warnings(y, sr=model.sample_rate):
        answer["warnings"] = warnings
    if images:
        answer["images"] = clip_images(y, model, record.get("probabilities"))
    return answer


def detect(model: Model, path: Path, *, max_s: float, images: bool, threshold: float | None = None) -> dict:
    """The audio file `path` (a private temporary copy of the upload) -> the /detect answer:
    events with score >= `threshold` (None: the model's decision threshold, as `respira detect`),
    counts and, with `images`, the score timeline as a PNG data URL."""
    from respira import audio
    from respira.detect import DetectConfig, detect_file
    from respira.detect.report import summary

    cfg = DetectConfig(threshold=float(model.meta.thresholds["decision"]) if threshold is None else threshold)
    try:
        header = audio.info(path, check=False)
        _check_length(header.duration_s, max_s=max_s)
        result = detect_file(path, model, cfg, progress=_length_guard(max_s))
    except AudioError as e:
        raise ApiError(415, _upload_message(str(e), name=str(path))) from None
    result = dataclasses.replace(result, file=RECORDING_NAME)
    totals = summary([result], model=model.name, cfg=cfg)
    answer = {
        "model": model.name,
        "duration_s": round(result.duration_s, 3),
        "threshold": cfg.threshold,
        "events": [{k: v for k, v in e.to_dict().items() if k != "file"} for e in result.events],
        "summary": {k: totals[k] for k in SUMMARY_KEYS},
    }
    if images:
        answer["images"] = {"timeline": data_url(_timeline_png(result))}
    return answer


def decode(data: bytes, *, sr: int, max_s: float) -> np.ndarray:
    """Audio bytes -> mono float32 [samples] at `sr` Hz, decoded block by block so that audio
    longer than `max_s` seconds is refused (ApiError 422) after at most one block past the limit.
    ApiError 415 when the bytes are not audio that can be decoded."""
    from respira import audio

    blocks, samples = [], 0
    try:
        for block in audio.stream(data, sr=sr, block_s=DECODE_BLOCK_S):
            samples += len(block)
            _check_length(samples / sr, max_s=max_s)
            blocks.append(block)
    except AudioError as e:
        raise ApiError(415, _upload_message(str(e))) from None
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


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
        "waveform": waveform_png(y, sr=model.sample_rate),
        "mfcc": spectrogram_png(coefficients, cfg=cfg, kind="mfcc"),
        "mel": spectrogram_png(mel, cfg=cfg, kind="mel"),
    }
    if probabilities:
        pngs["probabilities"] = probabilities_png(probabilities)
    return {name: data_url(png) for name, png in pngs.items()}


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _check_length(seconds: float, *, max_s: float) -> None:
    if seconds > max_s:
        raise ApiError(422, f"audio too long: {_duration(seconds)} is over the limit of {_duration(max_s)}"
                            " for this endpoint")


def _length_guard(max_s: float):
    """A detect_file progress callback that counts the decoded seconds and stops past `max_s`
    (the header's length can be missing or wrong)."""
    total = 0.0

    def advance(seconds: float) -> None:
        nonlocal total
        total += seconds
        _check_length(total, max_s=max_s)

    return advance


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.4g} h"
    if seconds >= 60:
        return f"{seconds / 60:.4g} min"
    return f"{seconds:.4g} s"


def _upload_message(message: str, *, name: str = "<bytes>") -> str:
    """A decoder message about the upload, naming it "upload" instead of a buffer or a temporary path."""
    return message.replace(name, "upload") if name in message else f"upload: {message}"


def _timeline_png(result) -> bytes:
    from respira.detect.report import timeline_figure

    buffer = io.BytesIO()
    timeline_figure(result).savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
