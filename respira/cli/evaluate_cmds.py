"""`respira evaluate MODEL MANIFEST -o DIR`: score a manifest's rows and write metrics.json and report.md."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from respira.cli.app import app, console, err_console


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Argument(..., help="A built-in model name or a .respira bundle path."),
    manifest: Path = typer.Argument(..., help="Manifest (.csv / .jsonl) with the true labels."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.json, report.md, predictions.csv, figures."),
    split: str = typer.Option("auto", help="Rows to score: auto (the test rows when the manifest has "
                              "any, else all), all, or a split name (test, val, train)."),
    n_boot: int = typer.Option(1000, "--n-boot", min=0, help="Bootstrap resamples for the 95% intervals: of the "
                               "manifest's subjects with all their rows when it names any, else of rows."),
    batch_size: int = typer.Option(32, min=1, help="Windows scored at once."),
    strict: bool = typer.Option(False, "--strict", help="Refuse rows whose labels the model does not know "
                                "(by default they are left out with a warning)."),
) -> None:
    """Evaluate a model on a manifest. A binary model scores its positive class against every other
    label; rows with labels the model does not know, and unreadable rows, are named on stderr and left out."""
    from respira.evaluate import evaluate

    result = evaluate(model, manifest, out=out, split=split, strict=strict, n_boot=n_boot,
                      batch_size=batch_size, progress=True, log=_note)
    if result.failures:
        _note("\n".join(f"unreadable, left out: {failure}" for failure in result.failures))
    headline = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    console.print(json.dumps(headline, indent=1), markup=False, highlight=False, soft_wrap=True)
    unknown = sum(result.metrics["left_out_labels"].values())
    left_out = (f", {unknown} with unknown labels left out" if unknown else "") + (
        f", {len(result.failures)} unreadable left out" if result.failures else "")
    console.print(f"wrote {out / 'metrics.json'} and {out / 'report.md'} ({result.metrics['data']['n']} rows"
                  f"{left_out})", markup=False, highlight=False, soft_wrap=True)


def _note(text: str) -> None:
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)
