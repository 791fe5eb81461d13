"""`respira predict`, `respira models` and `respira export`: score clips, list built-in models, export to ONNX."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console
from respira.errors import AudioError, ConfigError

FORMATS = ("table", "csv", "json")
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
    backend: str = typer.Option("torch", help="torch, or onnx (exports the bundle on the fly, runs onnxruntime)."),
    batch_size: int = typer.Option(32, min=1, help="Windows scored at once."),
) -> None:
    """Classify audio clips: one row per file. Unreadable files are listed on stderr (exit code 1)."""
    from respira.inference import load_model

    fmt = fmt or _format_from(out)
    _check_choice("--format", fmt, FORMATS)
    _check_choice("--backend", backend, BACKENDS)
    files = audio_files(paths)
    scorer = load_model(model, backend=backend)
    records = scorer.predict([str(f) for f in files], batch_size=batch_size, progress=len(files) > 1)
    good = [r for r in records if "error" not in r]
    failed = [r for r in records if "error" in r]
    text = WRITERS[fmt](good, scorer.classes, scorer.task)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        err_console.print(f"wrote {len(good)} row(s) to {out}", markup=False, highlight=False)
    for r in failed:
        reason = r["error"] if r["error"].startswith(r["file"]) else f"{r['file']}: {r['error']}"
        err_console.print(f"unreadable: {reason}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def audio_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and the audio files (by extension) under each folder, sorted; AudioError for a folder without any."""
    from respira.audio import AUDIO_EXTENSIONS

    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
        if not found:
            raise AudioError(f"{path}: no audio files in this folder (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
        files.extend(found)
    return files


def _format_from(out: Path | None) -> str:
    if out is None:
        return "table"
    return "json" if out.suffix.lower() == ".json" else "csv"


def _check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{option}: {value!r} is not one of {', '.join(choices)}")


# --- output formats -------------------------------------------------------------------------


def columns(classes: Sequence[str], task: str) -> list[str]:
    """CSV / table columns: file,label,score,prob_<class>... (multilabel: file,labels,prob_...; regression: file,value)."""
    probs = [f"prob_{c}" for c in classes]
    return {
        "classification": ["file", "label", "score", *probs],
        "multilabel": ["file", "labels", *probs],
        "regression": ["file", "value"],
    }[task]


def _cells(record: dict, task: str) -> dict[str, object]:
    cells: dict[str, object] = {k: v for k, v in record.items() if k not in ("probabilities", "duration_s")}
    if task == "multilabel":
        cells["labels"] = "+".join(record["labels"])
    cells.update({f"prob_{c}": p for c, p in record.get("probabilities", {}).items()})
    return cells


def _csv(records: list[dict], classes: Sequence[str], task: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(classes, task), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in _cells(r, task).items()})
    return buffer.getvalue()


def _json(records: list[dict], classes: Sequence[str], task: str) -> str:
    return json.dumps(records, indent=1) + "\n"


def _table(records: list[dict], classes: Sequence[str], task: str) -> str:
    from rich.console import Console
    from rich.table import Table

    names = columns(classes, task)
    table = Table(*names)
    table.columns[0].overflow = "fold"
    for r in records:
        cells = _cells(r, task)
        table.add_row(*(f"{cells[k]:.3f}" if isinstance(cells[k], float) else str(cells[k]) for k in names))
    buffer = Console(file=io.StringIO(), width=max(console.width, 100), force_terminal=False)
    buffer.print(table)
    return buffer.file.getvalue()


WRITERS: dict[str, Callable[[list[dict], Sequence[str], str], str]] = {"table": _table, "csv": _csv, "json": _json}
"""--format -> (good records, classes, task) -> text."""


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
