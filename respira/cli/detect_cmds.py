"""`respira detect` (long recordings -> events, counts per hour, report) and `respira evaluate-events`."""

from __future__ import annotations

from pathlib import Path

import typer

from respira.cli.app import app, console, err_console

CONFIG_HELP = "YAML file with a `detect:` section of detector settings (respira.detect.DetectConfig keys)."
SET_HELP = "Override a detector setting, e.g. --set detect.threshold=0.9 (repeatable; over --config)."
WORKERS_HELP = ("Run the files in parallel on a local Dask cluster of N worker processes, each with cores // N "
                "threads (needs respira\\[dask]).")
SCHEDULER_HELP = ("Run the files on a running Dask cluster, e.g. tcp://host:8786 (`dask scheduler`, `dask worker`); "
                  "its workers must see these paths and OUT. Not with --workers.")


@app.command("detect")
def detect_cmd(
    paths: list[Path] = typer.Argument(..., help="Audio files or folders (searched for audio files).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    model: str = typer.Option("cough", "--model", "-m", help="Built-in model name or bundle path."),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    threshold: float | None = typer.Option(None, help="Event score threshold (default: the model's decision threshold)."),
    gate: bool | None = typer.Option(None, "--gate/--no-gate", help="Score only windows near sound above the noise floor (default: on)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Skip files finished by an earlier run with the same settings; continue a killed one."),
    device: str = typer.Option("cpu", help="Torch device for the model: cpu, cuda, cuda:N."),
    workers: int | None = typer.Option(None, "--workers", help=WORKERS_HELP, show_default=False),
    scheduler: str | None = typer.Option(None, "--scheduler", help=SCHEDULER_HELP, show_default=False),
) -> None:  # fmt: skip
    """Find coughs in long recordings: OUT/events.csv, candidates.csv, events.json, Audacity and
    Raven label tracks, timelines, summary.json, report.html and params.json (the settings used).
    With --workers or --scheduler the files run in parallel on Dask workers, the model loaded once
    per worker, with the same outputs; each file's result is kept when done: a re-run skips it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from respira.detect.config import detect_settings
    from respira.detect.job import detect
    from respira.display import events_table, failure_lines

    settings = detect_settings(config, set_, threshold=threshold, gate=gate)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("detecting", total=None, done="")

        def advance(seconds: float, total: float) -> None:
            bar.update(task, total=max(total, 1e-9), advance=seconds)
            bar.update(task, done=f"{bar.tasks[0].completed / 3600:.2f} / {total / 3600:.2f} h")

        run = detect(paths, out=out, model=model, settings=settings, resume=resume, device=device, progress=advance,
                     workers=workers, scheduler=scheduler)

    if run.events:
        console.print(events_table(run.events))
    s = run.summary
    console.print(f"{s['coughs']} coughs in {s['bouts']} bouts, {s['coughs_per_hour']:.1f} per hour over "
                  f"{s['hours_analysed']:.2f} h ({len(run.results)} file(s), threshold {run.cfg.threshold:g})",
                  highlight=False, markup=False)
    console.print(f"report: {run.out / 'report.html'}", highlight=False, markup=False, soft_wrap=True)
    if run.failures:
        err_console.print(failure_lines(run.failures), markup=False, highlight=False, soft_wrap=True)
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
    from respira.detect.event_job import evaluate_events
    from respira.display import event_metrics_lines

    metrics = evaluate_events(events, manifest, out=out, label=label, ignore_around_s=ignore_around, tolerance_s=tolerance,
                              threshold=threshold, group_by=group_by, review=review)
    console.print("\n".join(event_metrics_lines(metrics)), highlight=False, markup=False, soft_wrap=True)
    console.print(f"wrote {out / 'metrics.json'} and {out / 'curve.png'}", highlight=False, markup=False, soft_wrap=True)
    if review:
        console.print(f"review: {metrics['review_page']}", highlight=False, markup=False, soft_wrap=True)
