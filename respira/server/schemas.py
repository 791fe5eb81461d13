"""The JSON the API answers with, as pydantic models (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every refused request: the reason in words."""

    error: str = Field(examples=["upload too large: the limit is 50 MB"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    models: list[str] = Field(description="Names of the loaded models; the first is the default.")


class ModelInfo(BaseModel):
    name: str
    task: str = Field(description="classification, multilabel or regression")
    classes: list[str]
    positive: str | None = Field(description="The positive class of a binary screening model, else null.")
    threshold: float = Field(description="The decision threshold on the positive-class probability.")
    sample_rate: int = Field(description="Hz; uploads are resampled to it.")
    # the HTTP API keeps its key clip_seconds (a contract of the JSON body); the model calls it clip_s
    clip_seconds: float = Field(description="The window the model sees; longer audio is scored in windows and pooled.")
    metrics: dict[str, Any] = Field(description="Test metrics from the bundle's training provenance (may be empty).")


class Prediction(BaseModel):
    """One clip's result; the fields present depend on the model's task."""

    model: str
    duration_s: float
    label: str | None = Field(None, description="classification: the predicted class")
    score: float | None = Field(None, description="classification: the positive-class probability of a binary "
                                                  "model, else the probability of `label`")
    probabilities: dict[str, float] | None = Field(None, description="class -> probability")
    diagnosis: str | None = Field(None, description="binary models: the positive class, or 'not <positive>'",
                                  examples=["cough"])
    labels: list[str] | None = Field(None, description="multilabel: the classes over their thresholds")
    value: float | None = Field(None, description="regression: the predicted value")
    warnings: list[str] | None = Field(None, description="quality notes on the audio: silent, clipped, very short",
                                       examples=[["silent"]])
    images: dict[str, str] | None = Field(None, description="with images=true: waveform, mfcc, mel (and "
                                                            "probabilities) as data:image/png;base64 URLs")


class DetectedEvent(BaseModel):
    start: float = Field(description="seconds from the start of the recording")
    end: float
    label: str
    score: float


class DetectSummary(BaseModel):
    coughs: int
    bouts: int = Field(description="events less than the bout gap apart count as one bout")
    coughs_per_hour: float
    hours_analysed: float
    hours_active: float = Field(description="hours near a sound loud enough to be scored")


class Detection(BaseModel):
    model: str
    duration_s: float
    threshold: float
    events: list[DetectedEvent]
    summary: DetectSummary
    settings: dict[str, Any] = Field(description="Every detector setting used (respira.detect.DetectConfig).")
    images: dict[str, str] | None = Field(None, description="with images=true: the timeline as a data URL")
