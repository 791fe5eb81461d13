"""Review sheets of an event evaluation: the spectrogram around each of the highest-scoring
false alarms and of the missed annotated events, with every annotation and detection near it,
on one HTML page. They tell a detector's errors from gaps in the annotations (a caller's
unannotated repeat coughs look like false alarms to the figures but not on the sheet)."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from respira.detect.event_metrics import FALSE_ALARM, HIT, IGNORED, Matched, false_alarms_at, missed_at

SPAN_S = 12.0
"""Seconds of audio on each sheet, centred on its false alarm or missed event."""

KIND_COLORS = {HIT: "#2ca02c", IGNORED: "#bbbbbb", FALSE_ALARM: "#d62728"}
"""Detection kind -> the colour of its bar on a sheet."""


def write_review(
    m: Matched,
    *,
    durations: Mapping[str, float],
    out: str | os.PathLike,
    threshold: float,
    top: int = 10,
) -> Path:
    """OUT_DIR/index.html and a PNG per sheet: the `top` highest-scoring false alarms of `m`
    (`respira.detect.event_metrics.match_detections`, with its ignore zones) at `threshold`
    and the `top` annotated events it misses (lowest best score first). durations: seconds per
    manifest file. Returns the page's path."""
    alarms, missed = false_alarms_at(m, threshold).head(top), missed_at(m, threshold).head(top)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for name, heading, rows, score in (("false-alarm", "Highest-scoring false alarms", alarms, "score"),
                                       ("missed", "Missed annotated events", missed, "best")):
        figures = []
        for i, r in enumerate(rows.itertuples(), 1):
            value = getattr(r, score)
            shown = "none" if np.isnan(value) else f"{value:.3f}"
            where = f"{r.start:.2f}–{r.end:.2f} s, {score} {shown}"
            caption, png = f"{Path(r.file).name} {where}", f"{name}-{i:02d}.png"
            _sheet(r.file, (r.start + r.end) / 2, m, durations=durations, threshold=threshold,
                   path=out / png, title=f"{name} {i}: {_short(r.file)} {where}")
            figures.append(f'<figure><img src="{png}" alt="{html.escape(caption)}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        sections.append(f"<h2>{heading} ({len(figures)})</h2>\n" + ("\n".join(figures) or "<p>None.</p>"))
    page = out / "index.html"
    page.write_text(_PAGE.format(span=SPAN_S, threshold=threshold, ignore=m.ignore_around_s, body="\n".join(sections)), encoding="utf-8")
    return page


def _sheet(file: str, centre: float, m: Matched, *, durations: Mapping[str, float], threshold: float, path: Path,
           title: str) -> None:
    from respira.audio import load
    from respira.features import FeatureConfig, log_mel
    from respira.plots import events_png

    cfg = FeatureConfig()
    start = max(0.0, min(centre - SPAN_S / 2, float(durations[file]) - SPAN_S))
    end = start + SPAN_S
    y = load(file, sample_rate=cfg.sample_rate, start_s=start, end_s=end)
    annotated = [(r.start, r.end) for r in _within(m.events, file, start, end).itertuples()]
    detections = [(r.start, r.end, r.score, KIND_COLORS[r.kind])
                  for r in _within(m.detections, file, start, end).itertuples()]
    events_png(log_mel(y, cfg).numpy(), cfg=cfg, start_s=start, annotated=annotated, detections=detections,
               threshold=threshold, path=path, title=title)


def _short(file: str, keep: int = 16) -> str:
    stem = Path(file).stem
    return stem if len(stem) <= keep else stem[:keep] + "…"


def _within(table: pd.DataFrame, file: str, start: float, end: float) -> pd.DataFrame:
    return table[(table["file"] == file) & (table["end"] > start) & (table["start"] < end)]


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>respira: event review</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}figure{{margin:1em 0}}
img{{max-width:100%}}figcaption{{font-size:.9em;color:#444}}</style></head><body>
<h1>Event review</h1>
<p>Log-mel spectrograms ({span:g} s each). White boxes: annotated events. Bars along the top:
detections with their scores: green overlaps an annotated event, grey lies within {ignore:g} s of one
(ignored), red is a false alarm; faint bars score under the threshold {threshold:.3g}.</p>
{body}
</body></html>
"""
