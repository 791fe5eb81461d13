"""`evaluate_events` as a job: a detect run's events file and an annotated manifest in,
metrics.json, curve.png and (optionally) review sheets out. See `respira.detect.event_metrics`
for what is counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from respira.audio import read_infos
from respira.data.manifest import read_manifest
from respira.detect.event_metrics import event_metrics, match_detections, write_event_metrics
from respira.detect.events import EVENT_COLUMNS, read_events_csv
from respira.detect.review import write_review
from respira.errors import DataError


def evaluate_events(
    events: str | os.PathLike,
    manifest: str | os.PathLike,
    *,
    out: str | os.PathLike,
    label: str = "cough",
    ignore_around_s: float = 10.0,
    tolerance_s: float = 0.0,
    threshold: float | None = None,
    group_by: str | None = None,
    review: int = 0,
) -> dict:
    """Event-level sensitivity, false alarms per hour and precision of the detections in `events`
    (a CSV with file,start,end,score) against the annotated events (`label`) of `manifest`.

    When `events` is a detect run's events.csv with candidates.csv beside it, the curve is drawn
    from the candidates and the operating point is that run's threshold (from params.json;
    `threshold` wins). group_by: a manifest column to break the counts down by (default: side,
    when the manifest has it). Writes OUT/metrics.json and OUT/curve.png, and with `review` N the
    spectrograms of the N highest-scoring false alarms and N missed events (OUT/review/index.html).
    Returns the metrics (`respira.detect.event_metrics.evaluate_events`) with detections_file and,
    with `review`, review_page.
    """
    events = Path(events)
    candidates, params = events.parent / "candidates.csv", events.parent / "params.json"
    source = candidates if events.name == "events.csv" and candidates.is_file() else events
    if threshold is None and source == candidates and params.is_file():
        threshold = json.loads(params.read_text(encoding="utf-8")).get("threshold")
    detections = pd.DataFrame([e.to_dict() for e in read_events_csv(source)], columns=list(EVENT_COLUMNS))
    annotations = read_manifest(manifest)
    infos, failures = read_infos(list(dict.fromkeys(annotations["path"])), check=False)
    if failures:
        raise DataError(f"{manifest}: cannot read the duration of {failures[0].file}: {failures[0].reason}")
    durations = {i.path: i.duration_s for i in infos}
    if group_by is None and "side" in annotations.columns:
        group_by = "side"
    matched = match_detections(detections, annotations, durations=durations, label=label,
                               ignore_around_s=ignore_around_s, tolerance_s=tolerance_s)
    metrics = event_metrics(matched, annotations, durations=durations, threshold=threshold, group_by=group_by)
    metrics["detections_file"] = str(source)
    write_event_metrics(metrics, out)
    if review:
        page = write_review(matched, durations=durations, out=Path(out) / "review", threshold=metrics["threshold"],
                            top=review)
        metrics["review_page"] = str(page)
    return metrics
