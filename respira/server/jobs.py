"""The work behind /predict and /detect, run in a worker thread: decode, score, draw.

Both go through the same core as the CLI and the Python API (`Model.predict`,
`respira.detect.detect_file`), so the server's numbers are the library's numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from respira.errors import AudioError
from respira.inference import Model
from respira.server.api_errors import ApiError
from respira.server.images import clip_images, data_url, timeline_png

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

    y = decode(data, sample_rate=model.sample_rate, max_s=max_s)
    record = model.predict(y, sample_rate=model.sample_rate)[0]
    if "error" in record:
        raise ApiError(415, _upload_message(record["error"]))
    answer = {"model": model.name, **{k: v for k, v in record.items() if k != "file"}}
    if model.positive is not None and "label" in record:
        answer["diagnosis"] = model.positive if record["label"] == model.positive else f"not {model.positive}"
    if warnings := quality_warnings(y, sample_rate=model.sample_rate):
        answer["warnings"] = warnings
    if images:
        answer["images"] = clip_images(y, model, record.get("probabilities"))
    return answer


def detect(model: Model, path: Path, *, max_s: float, images: bool, settings: Mapping[str, Any] | None = None) -> dict:
    """The audio file `path` (a private temporary copy of the upload) -> the /detect answer:
    events with score >= the threshold (the model's decision threshold unless `settings`, a
    mapping of DetectConfig keys, says otherwise; as `respira detect`), counts, the settings
    used and, with `images`, the score timeline as a PNG data URL."""
    from respira import audio
    from respira.detect import detect_file
    from respira.detect.config import detect_config
    from respira.detect.night_report import summary

    cfg = detect_config(model, settings)
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
        "settings": cfg.to_dict(),
    }
    if images:
        answer["images"] = {"timeline": data_url(timeline_png(result))}
    return answer


def decode(data: bytes, *, sample_rate: int, max_s: float) -> np.ndarray:
    """Audio bytes -> mono float32 [samples] at `sample_rate` Hz, decoded block by block so that audio
    longer than `max_s` seconds is refused (ApiError 422) after at most one block past the limit.
    ApiError 415 when the bytes are not audio that can be decoded."""
    from respira import audio

    blocks, samples = [], 0
    try:
        for block in audio.stream(data, sample_rate=sample_rate, block_s=DECODE_BLOCK_S):
            samples += len(block)
            _check_length(samples / sample_rate, max_s=max_s)
            blocks.append(block)
    except AudioError as e:
        raise ApiError(415, _upload_message(str(e))) from None
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


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
