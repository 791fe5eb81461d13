"""`respira predict`, `respira models` and `respira export`: score clips, list built-in models, export to ONNX."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console
from respira.errors import ConfigError
from respira.predict import BACKENDS, FORMATS

WORKERS_HELP = ("Score the clips in parallel on a local Dask cluster of N worker processes, each with cores // N "
                "threads (needs respira\\[dask]).")
SCHEDULER_HELP = ("Score the clips on a running Dask cluster, e.g. tcp://host:8786 (`dask scheduler`, `dask worker`); "
                  "its workers must see these paths and MODEL. Not with --workers.")
_HEADLINE = ("balanced_accuracy", "macro_f1", "roc_auc", "icbhi_score", "mae")
"""Test metrics shown by `respira models`, the first few present in a bundle's provenance."""


@app.command("predict")
def predict_command(
    model: str = typer.Argument(..., help="A built-in model name (see `respira models`) or a .respira bundle path."),
    paths: list[Path] = typer.Argument(..., help="Audio files, or folders searched recursively for audio files.",
                                       show_default=False),
    fmt: str | None = typer.Option(None, "--format", "-f",
                                   help="table, csv or json (default: table; with -o, json for .json, else csv)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the results to this file instead of stdout."),
    backend: str = typer.Option("torch", help="torch, or onnx (exports the bundle first, runs onnxruntime)."),
    batch_size: int = typer.Option(32, min=1, help="Windows scored at once."),
    workers: int | None = typer.Option(None, "--workers", help=WORKERS_HELP, show_default=False),
    scheduler: str | None = typer.Option(None, "--scheduler", help=SCHEDULER_HELP, show_default=False),
) -> None:
    """Classify audio clips: one row per file. Unreadable files are listed on stderr (exit code 1).
    With --workers or --scheduler, batches of clips are scored on Dask workers, the model loaded once
    per worker, with the same rows in the same order."""
    from respira.predict import format_records, predict_files

    fmt = fmt or _format_from(out)
    _check_choice("--format", fmt, FORMATS)
    _check_choice("--backend", backend, BACKENDS)
    result = predict_files(model, paths, backend=backend, batch_size=batch_size, workers=workers, scheduler=scheduler)
    text = format_records(result.records, fmt=fmt, classes=result.classes, task=result.task)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        err_console.print(f"wrote {len(result.records)} row(s) to {out}", markup=False, highlight=False)
    if result.failures:
        err_console.print("\n".join(f"unreadable: {reason}" for reason in result.failures),
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _format_from(out: Path | None) -> str:
    if out is None:
        return "table"
    return "json" if out.suffix.lower() == ".json" else "csv"


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{option}: {value!r} is not one of {', '.join(choices)}")


# --- models and export ----------------------------------------------------------------------


@app.command("models")
def models_command() -> None:
    """List the built-in models: task, classes, clip length, headline test metrics, size."""
    from rich.table import Table

    from respira.bundle import BUILTIN_DIR, builtin_names, builtin_path, read_meta

    names = builtin_names()
    if not names:
        console.print(f"No built-in models are installed yet (none in {BUILTIN_DIR}). "
                      "Train one with `respira train`, then pass its .respira bundle path to predict / detect.",
                      markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("name", "task", "classes", "clip", "test metrics", "size")
    for name in names:
        path = builtin_path(name)
        meta = read_meta(path)
        table.add_row(name, meta.task, ", ".join(meta.classes), f"{meta.clip_s:g} s",
                      headline_metrics(meta.provenance.get("metrics") or {}), _size(path.stat().st_size))
    console.print(table)


def headline_metrics(metrics: dict) -> str:
    """'balanced_accuracy 0.91, roc_auc 0.95' from a metrics.json-style dict ('-' when it has none)."""
    shown = [f"{k} {metrics[k]:.3f}" for k in _HEADLINE if isinstance(metrics.get(k), (int, float))]
    return ", ".join(shown[:3]) or "-"


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes / 1e3:.0f} kB"


@app.command("export")
def export_command(
    model: str = typer.Argument(..., help="A built-in model name or a .respira bundle path."),
    out: Path = typer.Option(..., "--out", "-o", help="The ONNX file to write (its .json sidecar goes beside it)."),
    graph_input: str = typer.Option("audio", "--input",
                                    help="audio (samples in, the clip's probabilities out) or features "
                                         "(one window's feature maps in; the app computes them, see docs/onnx.md)."),
) -> None:
    """Export a model to ONNX (audio in, probabilities out) with a JSON sidecar: labels, thresholds, sample rate."""
    from respira.export import export_onnx

    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"-o: {out} must end in .onnx (the sidecar is written as .json beside it)")
    path = export_onnx(model, out, input=graph_input)
    console.print(f"wrote {path} and {path.with_suffix('.json')}", markup=False, highlight=False, soft_wrap=True)
