"""`respira evaluate MODEL MANIFEST -o DIR`: score a manifest's rows and write metrics.json and report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from respira.cli.app import app, console, err_console
from respira.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from respira.evaluate import Predictions
    from respira.inference import Model

AUTO_SPLIT = "auto"
ALL_SPLITS = "all"


@app.command("evaluate")
def evaluate_command(
    model: str = typer.Argument(..., help="A built-in model name or a .respira bundle path."),
    manifest: Path = typer.Argument(..., help="Manifest (.csv / .jsonl) with the true labels."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.json, report.md, predictions.csv, figures."),
    split: str = typer.Option(AUTO_SPLIT, help="Rows to score: auto (the test rows when the manifest has "
                              "any, else all), all, or a split name (test, val, train)."),
    n_boot: int = typer.Option(1000, "--n-boot", min=0, help="Bootstrap resamples for the 95% intervals: of the "
                               "manifest's subjects with all their rows when it names any, else of rows."),
    batch_size: int = typer.Option(32, min=1, help="Windows scored at once."),
) -> None:
    """Evaluate a model on a manifest. A binary model scores its positive class against every other
    label; unreadable rows are listed on stderr and left out."""
    from respira.data import read_manifest
    from respira.evaluate import evaluate_predictions
    from respira.inference import load_model

    scorer = load_model(model)
    table = read_manifest(manifest)
    rows, note = select_rows(table, split, where=str(manifest))
    err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    pred, failures = manifest_predictions(scorer, rows, batch_size=batch_size, progress=True, where=str(manifest))
    for failure in failures:
        err_console.print(f"unreadable, left out: {failure}", markup=False, highlight=False, soft_wrap=True)
    metrics = evaluate_predictions(pred, out_dir=out, model_name=scorer.name, n_boot=n_boot)
    headline = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    console.print(json.dumps(headline, indent=1), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out / 'metrics.json'} and {out / 'report.md'} ({len(pred.targets)} rows"
                  f"{f', {len(failures)} unreadable left out' if failures else ''})",
                  markup=False, highlight=False, soft_wrap=True)


def select_rows(table: pd.DataFrame, split: str, *, where: str) -> tuple[pd.DataFrame, str]:
    """(rows to evaluate, a note saying which): split "auto" = the test rows if any, else all; "all"; or a split name."""
    splits = table["split"].fillna("").astype(str) if "split" in table.columns else None
    if split == AUTO_SPLIT:
        has_test = splits is not None and (splits == "test").any()
        split = "test" if has_test else ALL_SPLITS
        if not has_test:
            return table, f"{where}: no test split; evaluating all {len(table)} rows"
    if split == ALL_SPLITS:
        return table, f"evaluating all {len(table)} rows of {where}"
    chosen = table[splits == split] if splits is not None else table.iloc[:0]
    if chosen.empty:
        present = sorted(set(splits) - {""}) if splits is not None else []
        raise DataError(f"{where}: no rows with split {split!r} (splits present: {', '.join(present) or 'none'})")
    return chosen, f"evaluating the {len(chosen)} {split} rows of {where} ({len(table)} rows in all)"


def manifest_predictions(model: Model, rows: pd.DataFrame, *, batch_size: int = 32, progress: bool = False,
                         where: str = "manifest") -> tuple[Predictions, list[str]]:
    """Score `rows` through `model` and pair the outputs with their true targets; (Predictions, failures).

    Targets: classification -> class indices (a binary model: its positive label vs all others);
    multilabel -> 0/1 [n, k] from "a+b" / "both" labels; regression -> the manifest column named
    by the model's single class. Rows that fail to load are left out and listed in failures.
    """
    import numpy as np

    from respira.evaluate import Predictions

    targets = TARGETS[model.task](model, rows, where)
    outputs, kept, failures = model.score_rows(rows, batch_size=batch_size, progress=progress)
    if len(kept) == 0:
        raise DataError(f"{where}: none of the {len(rows)} rows could be read (first: {failures[0] if failures else '-'})")
    regression = model.task == "regression"
    output = np.asarray(outputs, dtype=float)
    pred = Predictions(
        manifest=rows.iloc[kept].reset_index(drop=True), classes=list(model.classes), task=model.task,
        proba=None if regression else output, values=output if regression else None, targets=targets[kept],
        positive=model.positive, threshold=float(model.meta.thresholds["decision"]),
    )
    return pred, failures


def _class_targets(model: Model, rows: pd.DataFrame, where: str) -> np.ndarray:
    import numpy as np

    labels = rows["label"].fillna("").astype(str).to_numpy()
    classes = list(model.classes)
    if model.positive is not None:
        positive = classes.index(model.positive)
        return np.where(labels == model.positive, positive, 1 - positive)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"{where}: label(s) {', '.join(map(repr, unknown))} are not classes of model "
                        f"{model.name!r} ({', '.join(classes)})")
    return np.array([classes.index(label) for label in labels], dtype=int)


def _multilabel_targets(model: Model, rows: pd.DataFrame, where: str) -> np.ndarray:
    from respira.train.tasks import TASKS

    return TASKS["multilabel"].targets(rows["label"].fillna("").astype(str), model.classes).astype(int)


def _regression_targets(model: Model, rows: pd.DataFrame, where: str) -> np.ndarray:
    from respira.train.tasks import TASKS

    column = model.classes[0]
    if column not in rows.columns:
        raise DataError(f"{where}: no column {column!r}, the value regression model {model.name!r} predicts")
    try:
        return TASKS["regression"].targets(rows[column].reset_index(drop=True), model.classes)[:, 0]
    except DataError as e:
        raise DataError(f"{where}: {e}") from None


TARGETS = {"classification": _class_targets, "multilabel": _multilabel_targets, "regression": _regression_targets}
"""model task -> (model, rows, where) -> true targets for every row."""
