"""`respira predict`, `respira models` and `respira export`: score clips, list built-in models, export to ONNX."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from respira.cli.app import app, console, err_console
from respira.errors import ConfigError
from respira.predict import FORMATS

if TYPE_CHECKING:
    from respira.inference import Model

BACKENDS = ("torch", "onnx")
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
) -> None:
    """Classify audio clips: one row per file. Unreadable files are listed on stderr (exit code 1)."""
    from respira.predict import format_records, predict_files

    fmt = fmt or _format_from(out)
    _check_choice("--format", fmt, FORMATS)
    _check_choice("--backend", backend, BACKENDS)
    scorer = _load(model, backend=backend)
    result = predict_files(scorer, paths, batch_size=batch_size)
    text = format_records(result.records, fmt=fmt, classes=scorer.classes, task=scorer.task)
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


def _load(model: str, *, backend: str) -> Model:
    """The model on `backend`; for onnx a bundle is exported first (an .onnx file is run as it is)."""
    if backend == "onnx":
        from respira.export import load_exported

        return load_exported(model)
    from respira.inference import load_model

    return load_model(model)


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
        table.add_row(name, meta.task, ", ".join(meta.classes), f"{meta.clip_seconds:g} s",
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
) -> None:
    """Export a model to ONNX (features in, probabilities out) with a JSON sidecar for the front end."""
    from respira.export import export_onnx

    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"-o: {out} must end in .onnx (the sidecar is written as .json beside it)")
    path = export_onnx(model, out)
    console.print(f"wrote {path} and {path.with_suffix('.json')}", markup=False, highlight=False, soft_wrap=True)
