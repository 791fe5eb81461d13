"""Event-level evaluation of a detector on annotated long recordings.

At threshold t, with detections of score >= t:

- an annotated event is *found* when a detection overlaps it, each widened by tolerance_s;
- a detection that overlaps an annotated event (with the tolerance) is a *true detection*;
  one that does not but lies within ignore_around_s of an annotated event is *ignored*
  (neither hit nor false alarm: unannotated parts of a bout, echoes); any other is a
  *false alarm*;
- sensitivity = found / annotated events; false_alarms_per_hour = false alarms / hours
  outside the zones of ignore_around_s around every annotated event; precision = true
  detections / (true detections + false alarms).

*Negatives* are the files without annotated events (the operator's side of a call): every
detection there is a false alarm, over the file's whole duration. Pairing the sensitivity on
the annotated events with the false-alarm rate on the negatives alone keeps unannotated events
(a caller's repeat coughs) out of the false alarms. `group_by` breaks the counts down by a
manifest column (e.g. `side`): the groups' files, hours and false alarms add up to the totals.

Every file of the manifest counts (its hours and its missed events), with or without
detections. Detections name files by path; they are matched to the manifest's files by
the path as written, the resolved path, then the last folder and file name, the file name, the
stem (the last three only where unique), so detections made under another folder prefix still match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from respira.errors import DataError

_CURVE_POINTS = 100
_FA_RATES = (1.0, 2.0, 5.0, 10.0, 20.0)  # the rates of sensitivity_at_fa_per_hour
_NEGATIVE_FA_RATES = (1.0, 2.0, 5.0, 10.0)  # the rates of sensitivity_at_fa_per_hour_of_negatives
_TOP = 10  # false alarms listed in top_false_alarms
HIT, IGNORED, FALSE_ALARM = "hit", "ignored", "false_alarm"
"""The kinds of a matched detection (see the module docstring)."""


@dataclass(frozen=True)
class Matched:
    """Detections and annotated events of a manifest, matched to each other.

    detections: file (the manifest path), start, end, score, kind (HIT, IGNORED or FALSE_ALARM);
    detections whose file matches no manifest file are left out and named in `unmatched`.
    events: file, start, end, best (the highest score of a detection that overlaps it; NaN: none).
    hours_outside: hours outside the ignore zones; files: the manifest's files, in order;
    seconds_outside: seconds outside the ignore zones per file; ignore_around_s, tolerance_s: as matched.
    """

    detections: pd.DataFrame
    events: pd.DataFrame
    hours_outside: float
    files: list[str]
    unmatched: list[str]
    seconds_outside: dict[str, float]
    ignore_around_s: float
    tolerance_s: float


def match_detections(
    detections: pd.DataFrame,
    annotations: pd.DataFrame,
    *,
    durations: Mapping[str, float],
    label: str = "cough",
    ignore_around_s: float = 10.0,
    tolerance_s: float = 0.0,
) -> Matched:
    """Match every detection (file, start, end, score) to the annotated events of `annotations`
    (rows with `label`; start/end empty = the whole file) at every threshold at once: each
    detection gets its kind, each event its best score. Arguments as for `evaluate_events`."""
    if ignore_around_s < 0 or tolerance_s < 0:
        raise DataError(f"ignore_around_s and tolerance_s must be >= 0, got {ignore_around_s}, {tolerance_s}")
    for column in ("file", "start", "end", "score"):
        if column not in detections.columns:
            raise DataError(f"detections: missing column {column!r} (expected file, start, end, score)")
    files = list(dict.fromkeys(str(p) for p in annotations["path"]))
    missing = [f for f in files if f not in durations]
    if missing:
        raise DataError(f"no duration for {len(missing)} manifest file(s), e.g. {missing[0]}")
    match = _matcher(files)
    det_files = [match(str(f)) for f in detections["file"]]
    unmatched = sorted({str(f) for f, m in zip(detections["file"], det_files) if m is None})
    if len(detections) and len(unmatched) == len(set(map(str, detections["file"]))):
        raise DataError(f"no detection file matches a manifest file (e.g. {unmatched[0]!r} vs {files[0]!r})")

    det_parts: list[pd.DataFrame] = []
    ev_parts: list[pd.DataFrame] = []
    outside: dict[str, float] = {}
    det_files_arr = np.array([m if m is not None else "" for m in det_files], dtype=object)
    for f in files:
        duration = float(durations[f])
        rows = annotations[(annotations["path"].astype(str) == f) & (annotations["label"] == label)]
        ev = np.column_stack([rows["start"].fillna(0.0).to_numpy(float), rows["end"].fillna(duration).to_numpy(float)]) \
            if len(rows) else np.zeros((0, 2))
        d = detections[det_files_arr == f]
        ds, de, sc = (d[c].to_numpy(float) for c in ("start", "end", "score"))
        overlap = (ds[:, None] < ev[None, :, 1] + tolerance_s) & (de[:, None] > ev[None, :, 0] - tolerance_s)
        gap = np.maximum(np.maximum(ev[None, :, 0] - de[:, None], ds[:, None] - ev[None, :, 1]), 0.0)
        near = (gap <= ignore_around_s).any(axis=1)
        kind = np.where(overlap.any(axis=1), HIT, np.where(near, IGNORED, FALSE_ALARM))
        det_parts.append(pd.DataFrame({"file": f, "start": ds, "end": de, "score": sc, "kind": kind}))
        best = np.where(overlap, sc[:, None], -np.inf).max(axis=0, initial=-np.inf)
        ev_parts.append(pd.DataFrame({"file": f, "start": ev[:, 0], "end": ev[:, 1],
                                      "best": np.where(np.isfinite(best), best, np.nan)}))
        outside[f] = duration - _covered(ev, pad=ignore_around_s, duration=duration)
    columns = {"detections": ["file", "start", "end", "score", "kind"], "events": ["file", "start", "end", "best"]}
    return Matched(
        detections=pd.concat(det_parts, ignore_index=True) if det_parts else pd.DataFrame(columns=columns["detections"]),
        events=pd.concat(ev_parts, ignore_index=True) if ev_parts else pd.DataFrame(columns=columns["events"]),
        hours_outside=sum(outside.values()) / 3600, files=files, unmatched=unmatched, seconds_outside=outside,
        ignore_around_s=ignore_around_s, tolerance_s=tolerance_s)


def false_alarms_at(m: Matched, threshold: float) -> pd.DataFrame:
    """The false alarms of `m` that score at least `threshold`, highest first."""
    d = m.detections
    return d[(d["kind"] == FALSE_ALARM) & (d["score"] >= threshold)].sort_values("score", ascending=False, kind="stable")


def missed_at(m: Matched, threshold: float) -> pd.DataFrame:
    """The annotated events of `m` that no detection scoring at least `threshold` overlaps,
    lowest best score first (events no detection overlaps at all first)."""
    e = m.events
    return e[~(e["best"] >= threshold)].sort_values("best", kind="stable", na_position="first")


def evaluate_events(
    detections: pd.DataFrame,
    annotations: pd.DataFrame,
    *,
    durations: Mapping[str, float],
    label: str = "cough",
    ignore_around_s: float = 10.0,
    tolerance_s: float = 0.0,
    threshold: float | None = None,
    thresholds: Sequence[float] | None = None,
    group_by: str | None = None,
) -> dict:
    """Sensitivity, false alarms per hour and precision of `detections` against `annotations`.

    detections: columns file, start, end, score. annotations: a manifest (path, label, start,
    end, ...); rows with `label` are the events (start/end empty = the whole file), every
    path is a file that was analysed. durations: seconds per manifest path. threshold: the
    operating point (None: the lowest detection score, i.e. every detection). thresholds: the
    curve's thresholds (None: the distinct detection scores, at most 100 of them). group_by: a
    manifest column to break the counts down by (None: no groups).

    Returns a JSON-ready dict: sensitivity, precision, false_alarms_per_hour, threshold,
    found, annotated_events, detections, true_detections, false_alarms, ignored_detections,
    hours, hours_outside_ignore_zones, sensitivity_at_1_fa_per_hour,
    sensitivity_at_2_fa_per_hour, best_threshold_at_2_fa_per_hour, sensitivity_at_fa_per_hour
    ({"1": .., "2": .., "5": .., "10": .., "20": ..}, interpolated like the two before), curve (a list of
    {threshold, sensitivity, false_alarms_per_hour, precision}), false_alarm_files (the files of the
    10 highest-scoring false alarms: {file, top_score, false_alarms at the threshold}, highest first),
    top_false_alarms (the 10 highest-scoring false alarms at the threshold: {file, start, end, score}),
    missed_events (the annotated events not found at the threshold: {file, start, end, best}, best =
    the highest score of a detection overlapping it or None, lowest first), files,
    unmatched_detection_files, ignore_around_s, tolerance_s; then, on the negatives (the files
    without annotated events): negative_files, hours_of_negatives, false_alarms_of_negatives and
    false_alarms_per_hour_of_negatives at the threshold, false_alarms_per_hour_of_negatives_curve
    (one rate per point of `curve`), sensitivity_at_fa_per_hour_of_negatives ({"1", "2", "5", "10"}:
    the sensitivity on every annotated event at that many false alarms per hour of negatives,
    interpolated likewise); group_by and groups ({value of the column: {files, hours,
    hours_outside_ignore_zones, annotated_events, found, sensitivity, detections, true_detections,
    ignored_detections, false_alarms, false_alarms_per_hour, false_alarms_per_hour_curve}}, by value;
    {} without group_by). A rate with a zero denominator is None.
    """
    m = match_detections(detections, annotations, durations=durations, label=label,
                         ignore_around_s=ignore_around_s, tolerance_s=tolerance_s)
    return event_metrics(m, annotations, durations=durations, threshold=threshold, thresholds=thresholds, group_by=group_by)


def event_metrics(
    m: Matched,
    annotations: pd.DataFrame,
    *,
    durations: Mapping[str, float],
    threshold: float | None = None,
    thresholds: Sequence[float] | None = None,
    group_by: str | None = None,
) -> dict:
    """`evaluate_events`' metrics of detections already matched to `annotations` (`match_detections`)."""
    groups = _file_groups(annotations, group_by) if group_by is not None else {}
    det = m.detections
    best = m.events["best"].fillna(-np.inf).to_numpy(float)
    kind, score = det["kind"].to_numpy(object), det["score"].to_numpy(float)
    owner, event_owner = det["file"].to_numpy(object), m.events["file"].to_numpy(object)
    hours_outside = m.hours_outside

    def at(ts: np.ndarray, files: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Counts and rates at each threshold of `ts`, over `files` (None: every file)."""
        hours = hours_outside if files is None else sum(m.seconds_outside[f] for f in files) / 3600
        d = slice(None) if files is None else np.isin(owner, list(files))
        b = best if files is None else best[np.isin(event_owner, list(files))]
        k, s = kind[d], score[d]
        found = _count_at_least(b, ts)
        true_det, false_alarms = _count_at_least(s[k == HIT], ts), _count_at_least(s[k == FALSE_ALARM], ts)
        return {
            "found": found, "true_detections": true_det, "false_alarms": false_alarms,
            "ignored_detections": _count_at_least(s[k == IGNORED], ts),
            "sensitivity": _ratio(found, np.full(len(ts), len(b))),
            "false_alarms_per_hour": _ratio(false_alarms, np.full(len(ts), hours)),
            "precision": _ratio(true_det, true_det + false_alarms),
        }

    operating = float(threshold) if threshold is not None else float(score.min()) if len(score) else 0.0
    point = {k: v[0] for k, v in at(np.array([operating])).items()}
    distinct = np.unique(score)[::-1]
    grid = np.asarray(thresholds, float) if thresholds is not None else distinct[_subsample(len(distinct), _CURVE_POINTS)]
    curve = at(grid)
    full = at(distinct)  # every operating point, for the interpolated figures
    defined = len(best) > 0 and hours_outside > 0

    def group(files: Sequence[str]) -> dict:
        """The counts over `files` at the operating threshold, and their false alarms per hour over the curve."""
        p = {k: v[0] for k, v in at(np.array([operating]), files).items()}
        return {
            "files": len(files), "hours": round(sum(float(durations[f]) for f in files) / 3600, 6),
            "hours_outside_ignore_zones": round(sum(m.seconds_outside[f] for f in files) / 3600, 6),
            "annotated_events": int(np.isin(event_owner, list(files)).sum()), "found": int(p["found"]),
            "sensitivity": _num(p["sensitivity"]),
            "detections": int(p["true_detections"] + p["false_alarms"] + p["ignored_detections"]),
            "true_detections": int(p["true_detections"]), "ignored_detections": int(p["ignored_detections"]),
            "false_alarms": int(p["false_alarms"]), "false_alarms_per_hour": _num(p["false_alarms_per_hour"]),
            "false_alarms_per_hour_curve": [_num(x) for x in at(grid, files)["false_alarms_per_hour"]],
        }

    negatives = [f for f in m.files if f not in set(event_owner)]
    neg = group(negatives)
    against_negatives = {"sensitivity": full["sensitivity"],
                         "false_alarms_per_hour": at(distinct, negatives)["false_alarms_per_hour"]}
    negatives_defined = len(best) > 0 and neg["hours"] > 0
    return {
        "sensitivity": _num(point["sensitivity"]), "precision": _num(point["precision"]),
        "false_alarms_per_hour": _num(point["false_alarms_per_hour"]), "threshold": operating,
        "found": int(point["found"]), "annotated_events": int(len(best)),
        "detections": int(point["true_detections"] + point["false_alarms"] + point["ignored_detections"]),
        "true_detections": int(point["true_detections"]), "false_alarms": int(point["false_alarms"]),
        "ignored_detections": int(point["ignored_detections"]),
        "hours": round(sum(float(durations[f]) for f in m.files) / 3600, 6),
        "hours_outside_ignore_zones": round(hours_outside, 6),
        "sensitivity_at_1_fa_per_hour": _sensitivity_at(full, 1.0, defined=defined),
        "sensitivity_at_2_fa_per_hour": _sensitivity_at(full, 2.0, defined=defined),
        "best_threshold_at_2_fa_per_hour": _best_threshold(distinct, full, 2.0),
        "sensitivity_at_fa_per_hour": {f"{k:g}": _sensitivity_at(full, k, defined=defined) for k in _FA_RATES},
        "curve": [{"threshold": float(t), "sensitivity": _num(curve["sensitivity"][i]),
                   "false_alarms_per_hour": _num(curve["false_alarms_per_hour"][i]), "precision": _num(curve["precision"][i])}
                  for i, t in enumerate(grid)],
        "false_alarm_files": _false_alarm_files(score[kind == FALSE_ALARM], owner[kind == FALSE_ALARM], operating),
        "top_false_alarms": _rows(false_alarms_at(m, operating).head(_TOP), "score"),
        "missed_events": _rows(missed_at(m, operating), "best"),
        "files": len(m.files), "unmatched_detection_files": m.unmatched,
        "ignore_around_s": m.ignore_around_s, "tolerance_s": m.tolerance_s,
        "negative_files": neg["files"], "hours_of_negatives": neg["hours"],
        "false_alarms_of_negatives": neg["false_alarms"],
        "false_alarms_per_hour_of_negatives": neg["false_alarms_per_hour"],
        "false_alarms_per_hour_of_negatives_curve": neg["false_alarms_per_hour_curve"],
        "sensitivity_at_fa_per_hour_of_negatives": {
            f"{k:g}": _sensitivity_at(against_negatives, k, defined=negatives_defined) for k in _NEGATIVE_FA_RATES},
        "group_by": group_by, "groups": {value: group(files) for value, files in groups.items()},
    }


def write_event_metrics(metrics: dict, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write OUT/metrics.json and OUT/curve.png (sensitivity against false alarms per hour)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    return out / "metrics.json", curve_png(metrics, out / "curve.png")


def curve_png(metrics: dict, path: str | os.PathLike) -> Path:
    """Sensitivity against false alarms per hour over the thresholds, with the operating point;
    beside it (where there are negatives) against the false alarms per hour of the negatives."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lines = (([p["false_alarms_per_hour"] for p in metrics["curve"]], "C0", "all files, over thresholds"),
             (metrics["false_alarms_per_hour_of_negatives_curve"], "C1",
              f"false alarms on the {metrics['negative_files']} files without events only"))
    for rates, color, name in lines:
        points = [(x, p["sensitivity"]) for x, p in zip(rates, metrics["curve"])
                  if x is not None and p["sensitivity"] is not None]
        if points:
            fa, sens = zip(*sorted([(0.0, 0.0), *points]))
            ax.plot(fa, sens, "-", color=color, linewidth=1.5, marker=".", markersize=3, label=name)
    if metrics["false_alarms_per_hour"] is not None and metrics["sensitivity"] is not None:
        ax.plot([metrics["false_alarms_per_hour"]], [metrics["sensitivity"]], "o", color="C3",
                label=f"threshold {metrics['threshold']:.3g}")
    if metrics["false_alarms_per_hour_of_negatives"] is not None and metrics["sensitivity"] is not None:
        ax.plot([metrics["false_alarms_per_hour_of_negatives"]], [metrics["sensitivity"]], "o", color="C3", mfc="none")
    for x in (1.0, 2.0):
        ax.axvline(x, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("sensitivity")
    negatives = f", {metrics['hours_of_negatives']:.2f} h event-free" if metrics["negative_files"] else ""
    ax.set_title(f"{metrics['annotated_events']} events, {metrics['hours']:.2f} h{negatives} "
                 f"(±{metrics['ignore_around_s']:g} s ignored around events)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def _matcher(files: Sequence[str]):
    """A function: a detection's file -> the manifest file it names, or None."""
    exact = {f: f for f in files}
    resolved = {str(Path(f).resolve()): f for f in files}
    keys = (lambda p: p.parts[-2:], lambda p: p.name, lambda p: p.stem)  # folder/name, name, stem
    tables: list[dict] = [{} for _ in keys]
    for f in files:
        for table, key in zip(tables, keys):
            table.setdefault(key(Path(f)), []).append(f)

    def match(name: str) -> str | None:
        p = Path(name)
        for found in (exact.get(name), resolved.get(str(p.resolve()))):
            if found is not None:
                return found
        for table, key in zip(tables, keys):
            if len(table.get(key(p), ())) == 1:
                return table[key(p)][0]
        return None

    return match


def _file_groups(annotations: pd.DataFrame, column: str) -> dict[str, list[str]]:
    """Value of `column` -> the manifest files with it, by value (no value: ""); a file's rows must agree."""
    if column not in annotations.columns:
        raise DataError(f"cannot group by {column!r}: the manifest has no such column "
                        f"(columns: {', '.join(map(str, annotations.columns))})")
    value_of: dict[str, str] = {}
    for f, v in zip(annotations["path"].astype(str), annotations[column]):
        v = "" if pd.isna(v) else str(v).strip()
        if value_of.setdefault(f, v) != v:
            raise DataError(f"cannot group by {column!r}: {f} has rows with {value_of[f]!r} and {v!r}")
    groups: dict[str, list[str]] = {}
    for f, v in value_of.items():
        groups.setdefault(v, []).append(f)
    return dict(sorted(groups.items()))


def _covered(ev: np.ndarray, *, pad: float, duration: float) -> float:
    """Seconds of [0, duration] within `pad` of an event [n, 2]."""
    total, end = 0.0, 0.0
    for a, b in sorted(zip(np.clip(ev[:, 0] - pad, 0, duration), np.clip(ev[:, 1] + pad, 0, duration))):
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total


def _false_alarm_files(scores: np.ndarray, files: np.ndarray, threshold: float, top: int = 10) -> list[dict]:
    """The files of the `top` highest-scoring false alarms, each with its top score and its count >= threshold."""
    out: dict[str, dict] = {}
    for i in np.argsort(-scores, kind="stable"):
        if len(out) == top and files[i] not in out:
            continue
        entry = out.setdefault(files[i], {"file": files[i], "top_score": round(float(scores[i]), 6), "false_alarms": 0})
        entry["false_alarms"] += int(scores[i] >= threshold)
    return list(out.values())


def _rows(table: pd.DataFrame, score: str) -> list[dict]:
    """JSON rows {file, start, end, `score`} of a detections or events table."""
    return [{"file": r.file, "start": round(float(r.start), 3), "end": round(float(r.end), 3),
             score: _num(getattr(r, score))} for r in table.itertuples()]


def _count_at_least(values: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """[len(ts)]: how many values are >= each threshold."""
    return len(values) - np.searchsorted(np.sort(values), ts, side="left")


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.divide(a, b, out=np.full(a.shape, np.nan), where=b > 0)


def _subsample(n: int, k: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n - 1, k)).astype(int)) if n > k else np.arange(n)


def _sensitivity_at(full: dict[str, np.ndarray], fa_per_hour: float, *, defined: bool) -> float | None:
    """Sensitivity at `fa_per_hour`, interpolated linearly between operating points (and the
    origin: an infinite threshold); the highest sensitivity reached when the curve stays below it.
    None unless `defined` (there are annotated events and hours outside the ignore zones)."""
    if not defined:
        return None
    xs = np.concatenate([[0.0], full["false_alarms_per_hour"]])
    ys = np.concatenate([[0.0], full["sensitivity"]])
    order = np.lexsort((ys, xs))
    xs, ys = xs[order], ys[order]
    last = np.r_[xs[1:] != xs[:-1], True]  # the highest sensitivity at each false-alarm rate
    return round(float(np.interp(fa_per_hour, xs[last], ys[last])), 6)


def _best_threshold(ts: np.ndarray, full: dict[str, np.ndarray], fa_per_hour: float) -> float | None:
    """The threshold with the highest sensitivity among those with at most `fa_per_hour` (ties: the higher threshold)."""
    fa, sens = full["false_alarms_per_hour"], full["sensitivity"]
    ok = np.flatnonzero((fa <= fa_per_hour) & ~np.isnan(sens))
    if len(ok) == 0:
        return None
    return float(ts[ok[np.argmax(sens[ok])]])  # ts descend, so argmax picks the highest threshold of a tie


def _num(x: float) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 6)
