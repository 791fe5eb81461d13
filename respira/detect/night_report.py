"""A night in numbers and pictures: counts per hour, the score timeline, a self-contained HTML report.

Figures are drawn on their own `matplotlib.figure.Figure` with the Agg canvas (no pyplot state).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from respira.detect.config import DetectConfig
from respira.detect.events import group_bouts
from respira.detect.state import FileResult

_DPI = 110
_MAX_POINTS = 4000  # score points drawn per timeline (max-pooled)
_MAX_EVENT_ROWS = 1000  # events listed in the HTML report
# (shortest duration in s, time unit name, seconds per unit, count bin in s, bin name)
_SCALES = ((7200.0, "hours", 3600.0, 3600.0, "hour"), (1200.0, "minutes", 60.0, 600.0, "10 min"),
           (0.0, "seconds", 1.0, 60.0, "minute"))


def per_hour(result: FileResult, *, bin_s: float = 3600.0) -> list[int]:
    """Events per bin of `bin_s` seconds from the start of the file (the last bin may be partial)."""
    n = max(1, math.ceil(result.duration_s / bin_s))
    counts = np.bincount([min(n - 1, int(e.start // bin_s)) for e in result.events], minlength=n)
    return counts.tolist()


def summary(results: Sequence[FileResult], *, model: str, cfg: DetectConfig) -> dict:
    """Counts over all files and per file.

    Keys: coughs, bouts (a lone cough is a bout of 1), coughs_per_hour (per hour analysed),
    hours_analysed, hours_active (within the gate's padding of a loud frame), files (one dict
    per file with the same keys plus path and per_hour: counts per hour from its start),
    threshold, model, settings (every DetectConfig value).
    """
    files = [_counts(r, cfg=cfg) | {"per_hour": per_hour(r)} for r in results]
    total = _totals(sum(f["coughs"] for f in files), sum(f["bouts"] for f in files),
                    sum(r.duration_s for r in results), sum(r.active_s for r in results))
    return {**total, "files": files, "threshold": cfg.threshold, "model": model, "settings": cfg.to_dict()}


def _counts(r: FileResult, *, cfg: DetectConfig) -> dict:
    events = r.events
    return {"path": r.file, **_totals(len(events), len(group_bouts(events, gap_s=cfg.bout_gap_s)), r.duration_s, r.active_s)}


def _totals(coughs: int, bouts: int, seconds: float, active_s: float) -> dict:
    hours = seconds / 3600
    return {"coughs": coughs, "bouts": bouts, "coughs_per_hour": round(coughs / hours, 3) if hours > 0 else 0.0,
            "hours_analysed": round(hours, 4), "hours_active": round(active_s / 3600, 4)}


def timeline_figure(result: FileResult):
    """Score over time with the threshold and the events marked; event counts per bin below.

    Time is in hours for recordings of 2 h or more (counts per hour), minutes from 20 min (per
    10 min), seconds below that (per minute). Returns a matplotlib Figure (Agg canvas).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _, unit, per_unit, bin_s, bin_name = next(s for s in _SCALES if result.duration_s >= s[0])
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (2.2, 1)})
    t, s = _pooled(result.times, result.scores.astype(np.float32))
    top.plot(t / per_unit, s, color="C0", linewidth=0.7, label="window score")
    top.axhline(result.threshold, color="C3", linestyle="--", linewidth=1, label=f"threshold {result.threshold:g}")
    events = result.events
    if events:
        top.plot([e.start / per_unit for e in events], [1.04] * len(events), "|", color="C3", markersize=9,
                 label=f"{len(events)} events")
    top.set_ylim(0, 1.1)
    top.set_ylabel("score")
    top.set_title(f"{Path(result.file).name}: {len(events)} events in {result.duration_s / 3600:.2f} h", loc="left")
    top.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncols=3, frameon=False)
    top.grid(alpha=0.3)
    counts = per_hour(result, bin_s=bin_s)
    bottom.bar((np.arange(len(counts)) * bin_s) / per_unit, counts, width=bin_s / per_unit * 0.9, align="edge", color="C1")
    bottom.set_ylabel(f"per {bin_name}")
    bottom.set_xlabel(f"time ({unit})")
    bottom.set_xlim(0, max(result.duration_s, 1e-9) / per_unit)
    return fig


def timeline_png(result: FileResult, path: str | os.PathLike) -> Path:
    """Write `timeline_figure(result)` as a PNG to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeline_figure(result).savefig(path, dpi=_DPI)
    return path


def night_report_html(summary: dict, results: Sequence[FileResult], out: str | os.PathLike) -> Path:
    """Write OUT/report.html: totals, per-file counts per hour, each file's timeline (embedded
    PNG) and a table of events. Self-contained: no external files or scripts."""
    page = Path(out) / "report.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    e = html.escape
    totals = [("coughs", summary["coughs"]), ("bouts", summary["bouts"]), ("coughs per hour", summary["coughs_per_hour"]),
              ("hours analysed", summary["hours_analysed"]), ("hours active", summary["hours_active"]),
              ("threshold", summary["threshold"]), ("model", summary["model"]), ("files", len(summary["files"]))]
    parts = [f"<h1>Night report</h1>{_table(['', ''], totals)}", "<h2>Files</h2>"]
    parts.append(_table(["file", "coughs", "bouts", "coughs/h", "hours", "active h", "per hour from start"],
                        [(f["path"], f["coughs"], f["bouts"], f["coughs_per_hour"], f["hours_analysed"], f["hours_active"],
                          " ".join(map(str, f["per_hour"]))) for f in summary["files"]]))
    for r in results:
        buf = io.BytesIO()
        timeline_figure(r).savefig(buf, format="png", dpi=_DPI)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        parts.append(f'<h3>{e(r.file)}</h3><img alt="timeline of {e(r.file)}" src="data:image/png;base64,{data}">')
    events = [ev for r in results for ev in r.events]
    parts.append(f"<h2>Events ({len(events)})</h2>")
    parts.append(_table(["file", "start (s)", "end (s)", "label", "score"],
                        [(ev.file, f"{ev.start:.3f}", f"{ev.end:.3f}", ev.label, f"{ev.score:.3f}") for ev in events[:_MAX_EVENT_ROWS]]))
    if len(events) > _MAX_EVENT_ROWS:
        parts.append(f"<p>First {_MAX_EVENT_ROWS} of {len(events)} events; all are in events.csv.</p>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}")
    page.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>respira night report</title>"
                   f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n", encoding="utf-8")
    return page


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pooled(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most _MAX_POINTS points: the max score of each run of consecutive windows."""
    if len(s) <= _MAX_POINTS:
        return t, s
    k = math.ceil(len(s) / _MAX_POINTS)
    n = len(s) // k * k
    return t[:n:k], s[:n].reshape(-1, k).max(axis=1)
