"""Results as the terminal shows them: rich tables and lines of text (the CLI prints them).

Formatting only: every number comes from the core's results as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Column, Table

if TYPE_CHECKING:
    import pandas as pd

    from respira.audio import AudioInfo, Failure
    from respira.detect.events import Event
    from respira.store import Session


@contextmanager
def progress(total: int, *, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr over `total` items, shown only on a terminal and when
    `enabled`; yields advance(n=1)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not (enabled and console.is_terminal))
    task = bar.add_task(description, total=total)
    with bar:
        yield lambda n=1: bar.advance(task, n)


def manifest_table(df: pd.DataFrame, *, splits: Sequence[str], rows: int) -> Table:
    """Rows per label (lines) and split (columns, in the order of `splits`; empty split: unassigned), with totals."""
    counts = df.assign(split=df["split"].replace("", "unassigned")).pivot_table(
        index="label", columns="split", values="path", aggfunc="count", fill_value=0
    )[list(splits)]
    table = Table("label", *(Column(str(s), justify="right") for s in counts.columns), Column("total", justify="right"),
                  title=f"{rows} rows")
    for label, row in counts.iterrows():
        table.add_row(str(label), *(str(int(v)) for v in row), str(int(row.sum())))
    table.add_row("total", *(str(int(v)) for v in counts.sum()), str(rows), style="bold")
    return table


def events_table(events: Sequence[Event], *, limit: int = 20) -> Table:
    """The first `limit` events: file name, start, end, score."""
    more = f" (first {limit})" if len(events) > limit else ""
    table = Table("file", "start (s)", "end (s)", "score", title=f"{len(events)} events{more}")
    for e in events[:limit]:
        table.add_row(escape(Path(e.file).name), f"{e.start:.2f}", f"{e.end:.2f}", f"{e.score:.3f}")
    return table


def failure_lines(failures: Sequence[Failure]) -> str:
    """One `error: <reason>` line per failure."""
    return "\n".join(f"error: {f.reason}" for f in failures)


def event_line(e: Event, wall: str | None) -> str:
    """One event as the monitor prints it: start-end s, label, score, and the wall clock for live input."""
    when = f"  {wall[:23].replace('T', ' ')}" if wall else ""
    return f"{e.start:10.3f}-{e.end:.3f} s  {e.label}  {e.score:.3f}{when}"


def sessions_table(sessions: Sequence[Session], *, db: str) -> Table:
    """Monitoring sessions: id, name, status, start, hours analysed, events, source."""
    table = Table("id", "name", "status", "started", "hours", "events", "source", title=f"sessions in {escape(db)}")
    for s in sessions:
        table.add_row(str(s.id), escape(s.name), s.status, s.started_at[:19].replace("T", " "),
                      f"{s.seconds_analysed / 3600:.3f}", str(s.events), escape(s.source))
    return table


def infos_table(infos: Sequence[AudioInfo]) -> Table:
    """Audio files: path, duration, rate, channels, format, quality warnings (yellow rows have some)."""
    table = Table("file", "duration", "rate", "ch", "format", "warnings")
    table.columns[0].overflow = "fold"
    for r in infos:
        table.add_row(escape(r.path), f"{r.duration_s:.2f} s", f"{r.sample_rate} Hz", str(r.channels), r.format,
                      ", ".join(r.warnings) or "-", style="yellow" if r.warnings else None)
    return table


def infos_json(infos: Sequence[AudioInfo], failures: Sequence[Failure]) -> dict:
    """{"files": [{path, duration_s, sample_rate, channels, format, recovered, declared_duration_s, warnings}],
    "errors": [{path, error}]}."""
    keys = ("path", "duration_s", "sample_rate", "channels", "format", "recovered", "declared_duration_s")
    return {"files": [{**{k: getattr(r, k) for k in keys}, "warnings": list(r.warnings)} for r in infos],
            "errors": [{"path": f.file, "error": f.reason} for f in failures]}


def event_metrics_lines(metrics: dict) -> list[str]:
    """What `evaluate-events` says about its metrics: the operating point, each group, the negatives,
    the highest-scoring false alarm."""

    def show(x: float | None, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    m = metrics
    lines = [f"{m['annotated_events']} events in {m['hours']:.2f} h; at threshold {m['threshold']:.3g}: "
             f"sensitivity {show(m['sensitivity'], '.3f')}, {show(m['false_alarms_per_hour'], '.2f')} false alarms/h, "
             f"precision {show(m['precision'], '.3f')}; sensitivity at 1 FA/h {show(m['sensitivity_at_1_fa_per_hour'], '.3f')}, "
             f"at 2 FA/h {show(m['sensitivity_at_2_fa_per_hour'], '.3f')}"]
    lines += [f"{m['group_by']} {value}: {g['files']} file(s), {g['hours']:.2f} h, {g['annotated_events']} events, "
              f"{g['false_alarms']} false alarms ({show(g['false_alarms_per_hour'], '.2f')}/h outside the zones)"
              for value, g in m["groups"].items()]
    if m["negative_files"]:
        at = m["sensitivity_at_fa_per_hour_of_negatives"]
        lines.append(f"{m['negative_files']} file(s) without events ({m['hours_of_negatives']:.2f} h): "
                     f"{show(m['false_alarms_per_hour_of_negatives'], '.2f')} false alarms/h; sensitivity at "
                     + ", ".join(f"{k} FA/h {show(v, '.3f')}" for k, v in at.items()) + " of them")
    if m["false_alarm_files"]:
        top = m["false_alarm_files"][0]
        lines.append(f"highest-scoring false alarm ({top['top_score']:.3g}) in {top['file']}, "
                     f"{top['false_alarms']} false alarm(s) there at the threshold")
    return lines
