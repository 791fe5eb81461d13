"""Detected events, bouts, and their files: CSV, JSON, Audacity and Raven label tracks.

Times are seconds from the start of the file. CSV / JSON columns: file, start, end, label, score.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from respira.errors import DataError

EVENT_COLUMNS: tuple[str, ...] = ("file", "start", "end", "label", "score")
RAVEN_COLUMNS: tuple[str, ...] = (
    "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Score",
)


@dataclass(frozen=True)
class Event:
    """One detected sound: [start, end) seconds in `file`, its label and score (probability)."""

    file: str
    start: float
    end: float
    label: str
    score: float

    def to_dict(self) -> dict:
        return {"file": self.file, "start": round(self.start, 3), "end": round(self.end, 3),
                "label": self.label, "score": round(self.score, 4)}


@dataclass(frozen=True)
class Bout:
    """Consecutive events of one file, each less than the bout gap after the previous one ends."""

    file: str
    start: float
    end: float
    count: int


def group_bouts(events: Iterable[Event], *, gap_s: float) -> list[Bout]:
    """Events -> bouts (a single event is a bout of 1), sorted by file then start."""
    bouts: list[Bout] = []
    for e in sorted(events, key=lambda e: (e.file, e.start)):
        last = bouts[-1] if bouts else None
        if last is not None and last.file == e.file and e.start - last.end < gap_s:
            bouts[-1] = Bout(e.file, last.start, max(last.end, e.end), last.count + 1)
        else:
            bouts.append(Bout(e.file, e.start, e.end, 1))
    return bouts


def write_events_csv(events: Sequence[Event], path: str | os.PathLike) -> None:
    """One row per event with columns file,start,end,label,score (times in s, 3 decimals)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(EVENT_COLUMNS))
        writer.writeheader()
        writer.writerows(e.to_dict() for e in events)


def write_events_json(events: Sequence[Event], path: str | os.PathLike) -> None:
    """A JSON list of {file, start, end, label, score}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([e.to_dict() for e in events], indent=1), encoding="utf-8")


def write_audacity(events: Sequence[Event], path: str | os.PathLike) -> None:
    """An Audacity label track: `start<TAB>end<TAB>label` per line (File > Import > Labels)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{e.start:.3f}\t{e.end:.3f}\t{e.label}\n" for e in events]
    path.write_text("".join(lines), encoding="utf-8")


def write_raven(events: Sequence[Event], path: str | os.PathLike, *, high_freq_hz: float = 8000.0) -> None:
    """A Raven selection table (tab-separated, one selection per event, waveform view, channel 1,
    0 Hz .. high_freq_hz, the label as Annotation and the score)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["\t".join(RAVEN_COLUMNS)]
    rows += [f"{i}\tWaveform 1\t1\t{e.start:.3f}\t{e.end:.3f}\t0\t{high_freq_hz:g}\t{e.label}\t{e.score:.4f}"
             for i, e in enumerate(events, start=1)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def read_events_csv(path: str | os.PathLike) -> list[Event]:
    """Events from a CSV with columns file,start,end,score (label optional, default "cough")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"events file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("file", "start", "end", "score") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected {','.join(EVENT_COLUMNS)})")
        out = []
        for i, row in enumerate(reader, start=1):
            try:
                start, end, score = float(row["start"]), float(row["end"]), float(row["score"])
            except (TypeError, ValueError):
                raise DataError(f"{path}: row {i}: start, end and score must be numbers") from None
            if not 0 <= start <= end:
                raise DataError(f"{path}: row {i}: needs 0 <= start <= end, got start {start:g}, end {end:g}")
            out.append(Event(row["file"], start, end, row.get("label") or "cough", score))
    return out


def events_from_dicts(rows: Iterable[dict]) -> list[Event]:
    """Events from {file, start, end, label, score} dicts (as written by `Event.to_dict`)."""
    return [Event(str(r["file"]), float(r["start"]), float(r["end"]), str(r["label"]), float(r["score"])) for r in rows]

