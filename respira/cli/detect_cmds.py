"""`respira detect` (long recordings -> events, counts per hour, report) and `respira evaluate-events`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console

_SHOWN_EVENTS = 20


@app.command("detect")
def detect_cmd(
    paths: list[Path] = typer.Argument(..., help="Audio files or folders (searched for audio files).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    model: str = typer.Option("cough", "--model", "-m", help="Built-in model name or bundle path."),
    threshold: float | None = typer.Option(None, help="Event score threshold (default: the model's decision threshold)."),
    gate: bool = typer.Option(True, "--gate/--no-gate", help="Score only windows near sound above the noise floor."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip files finished by an earlier run with the same settings; continue a killed one."),
    device: str = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:N."),
) -> None:  # fmt: skip
    """Find coughs in long recordings: OUT/events.csv, candidates.csv, events.json, Audacity and
    Raven label tracks, timelines, summary.json, report.html and params.json."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from respira.detect.config import DetectConfig
    from respira.detect.pipeline import check_scorer
    from respira.detect.run import find_audio, run_detect
    from respira.errors import ConfigError
    from respira.inference import load_model

    if threshold is not None and not 0 <= threshold <= 1:
        raise ConfigError(f"--threshold must be in [0, 1], got {threshold}")
    scorer = load_model(model, device=device)
    check_scorer(scorer)
    chosen = threshold if threshold is not None else float(scorer.meta.thresholds.get("decision", 0.5))
    cfg = DetectConfig(threshold=chosen, gate=gate)
    found, failures = find_audio(paths)
    if not found and not failures:
        raise ConfigError(f"no audio files found in {', '.join(map(str, paths))}")
    total = sum(duration for _, duration in found)

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("detecting", total=max(total, 1e-9), done="")

        def advance(seconds: float) -> None:
            bar.advance(task, seconds)
            bar.update(task, done=f"{bar.tasks[0].completed / 3600:.2f} / {total / 3600:.2f} h")

        run = run_detect([f for f, _ in found], scorer, cfg, out, model=model, resume=resume, progress=advance,
                         skipped=failures)

    events = [e for r in run.results for e in r.events]
    if events:
        table = Table("file", "start (s)", "end (s)", "score", title=f"{len(events)} events" +
                      (f" (first {_SHOWN_EVENTS})" if len(events) > _SHOWN_EVENTS else ""))
        for e in events[:_SHOWN_EVENTS]:
            table.add_row(escape(Path(e.file).name), f"{e.start:.2f}", f"{e.end:.2f}", f"{e.score:.3f}")
        console.print(table)
    s = run.summary
    console.print(f"{s['coughs']} coughs in {s['bouts']} bouts, {s['coughs_per_hour']:.1f} per hour over "
                  f"{s['hours_analysed']:.2f} h ({len(run.results)} file(s), threshold {cfg.threshold:g})",
                  highlight=False, markup=False)
    console.print(f"report: {run.out_dir / 'report.html'}", highlight=False, markup=False, soft_wrap=True)
    for f in run.failures:
        err_console.print(f"error: {f.reason}", markup=False, highlight=False, soft_wrap=True)
    if run.failures:
        raise typer.Exit(1)


@app.command("evaluate-events")
def evaluate_events_cmd(
    events: Path = typer.Argument(..., help="events.csv from `respira detect` (or any CSV with file,start,end,score)."),
    manifest: Path = typer.Argument(..., help="Manifest of the annotated recordings (one row per event; every listed file counts)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for metrics.json and curve.png."),
    ignore_around: float = typer.Option(10.0, help="Seconds around each annotated event where an unmatched detection is not a false alarm."),
    tolerance: float = typer.Option(0.0, help="Seconds by which a detection may miss an annotated event and still match it."),
    label: str = typer.Option("cough", help="The manifest label of the annotated events."),
    threshold: float | None = typer.Option(None, help="Operating threshold (default: the one in params.json beside EVENTS, else every detection)."),
    review: int = typer.Option(0, min=0, help="Draw the spectrograms of the N highest-scoring false alarms and N missed events into OUT/review/index.html."),
    group_by: str | None = typer.Option(None, help="Manifest column to break the counts down by (default: side, when the manifest has it)."),
) -> None:  # fmt: skip
    """Event-level sensitivity, false alarms per hour and precision over thresholds.

    When candidates.csv sits beside EVENTS (as `respira detect` writes it), the curve is drawn
    from the candidates, and the operating point is the detect run's threshold. Files without
    annotated events (an operator's side of a call) are negatives: the sensitivity is also
    given against their false alarms per hour alone. `--review N` shows whether the false
    alarms are errors or unannotated events, and what the misses look like.
    """
    import pandas as pd

    from respira import audio
    from respira.data.manifest import read_manifest
    from respira.detect.evaluate import evaluate_events, write_event_metrics
    from respira.detect.events import read_events_csv
    from respira.errors import DataError, RespiraError

    candidates, params = events.parent / "candidates.csv", events.parent / "params.json"
    source = candidates if events.name == "events.csv" and candidates.is_file() else events
    if threshold is None and source == candidates and params.is_file():
        threshold = json.loads(params.read_text(encoding="utf-8")).get("threshold")
    detections = pd.DataFrame([e.to_dict() for e in read_events_csv(source)], columns=["file", "start", "end", "label", "score"])
    annotations = read_manifest(manifest)
    durations = {}
    for path in dict.fromkeys(annotations["path"]):
        try:
            durations[path] = audio.info(path, check=False).duration_s
        except RespiraError as e:
            raise DataError(f"{manifest}: cannot read the duration of {path}: {e}") from None
    if group_by is None and "side" in annotations.columns:
        group_by = "side"
    metrics = evaluate_events(detections, annotations, durations=durations, label=label, ignore_around_s=ignore_around,
                              tolerance_s=tolerance, threshold=threshold, group_by=group_by)
    metrics["detections_file"] = str(source)
    json_path, png_path = write_event_metrics(metrics, out)

    def show(x: float | None, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)

    console.print(
        f"{metrics['annotated_events']} events in {metrics['hours']:.2f} h; at threshold {metrics['threshold']:.3g}: "
        f"sensitivity {show(metrics['sensitivity'], '.3f')}, {show(metrics['false_alarms_per_hour'], '.2f')} false alarms/h, "
        f"precision {show(metrics['precision'], '.3f')}; sensitivity at 1 FA/h {show(metrics['sensitivity_at_1_fa_per_hour'], '.3f')}, "
        f"at 2 FA/h {show(metrics['sensitivity_at_2_fa_per_hour'], '.3f')}", highlight=False, markup=False, soft_wrap=True)
    for value, g in metrics["groups"].items():
        console.print(f"{group_by} {value}: {g['files']} file(s), {g['hours']:.2f} h, {g['annotated_events']} events, "
                      f"{g['false_alarms']} false alarms ({show(g['false_alarms_per_hour'], '.2f')}/h outside the zones)",
                      highlight=False, markup=False, soft_wrap=True)
    if metrics["negative_files"]:
        at = metrics["sensitivity_at_fa_per_hour_of_negatives"]
        console.print(f"{metrics['negative_files']} file(s) without events ({metrics['hours_of_negatives']:.2f} h): "
                      f"{show(metrics['false_alarms_per_hour_of_negatives'], '.2f')} false alarms/h; sensitivity at "
                      + ", ".join(f"{k} FA/h {show(v, '.3f')}" for k, v in at.items()) + " of them",
                      highlight=False, markup=False, soft_wrap=True)
    if metrics["false_alarm_files"]:
        top = metrics["false_alarm_files"][0]
        console.print(f"highest-scoring false alarm ({top['top_score']:.3g}) in {top['file']}, "
                      f"{top['false_alarms']} false alarm(s) there at the threshold", highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {json_path} and {png_path}", highlight=False, markup=False, soft_wrap=True)
    if review:
        from respira.detect.evaluate import match_detections
        from respira.detect.review import write_review

        matched = match_detections(detections, annotations, durations=durations, label=label,
                                   ignore_around_s=ignore_around, tolerance_s=tolerance)
        page = write_review(matched, durations=durations, out_dir=out / "review", threshold=metrics["threshold"],
                            ignore_around_s=ignore_around, top=review)
        console.print(f"review: {page}", highlight=False, markup=False, soft_wrap=True)
